#!/usr/bin/env bash
# Installs, idempotently and pinned, the Python side of the schema tests (tests/all/schemas):
# Apache Pulsar's Python client producing with Pulsar schemas, and Confluent's Schema Registry
# clients decoding what Sluice wrote. Into a venv outside the clone ($SLUICE_BUILD_CACHE/
# schema-test-venv), remade only when requirements.txt's pins change.
#   tests/python/install.sh           install (progress lines on stdout)
#   tests/python/install.sh --print   install if needed (progress on stderr), then print the
#                                     venv's python
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/env.sh"
venv=${SLUICE_TEST_VENV:-$SLUICE_BUILD_CACHE/schema-test-venv}
print=${1:-}
say() { if [[ $print = --print ]]; then echo "==> $*" >&2; else echo "==> $*"; fi; }
# Only the pins count, not the comments.
wanted=$(grep -v '^\s*#' "$here/requirements.txt" | sha256sum | cut -d' ' -f1)
if [[ -x $venv/bin/python && $(cat "$venv/.requirements.sha256" 2>/dev/null) = "$wanted" ]]; then
    say "schema tests' Python packages: up to date in $venv"
else
    started=$SECONDS
    say "installing the schema tests' Python packages (pulsar-client, confluent-kafka) into $venv (once per machine, ~1 minute)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    echo "$wanted" >"$venv/.requirements.sha256"
    say "schema tests' Python packages installed in $((SECONDS - started)) s"
fi
if [[ $print = --print ]]; then echo "$venv/bin/python"; fi
