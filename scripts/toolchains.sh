#!/usr/bin/env bash
# Installs, idempotently and pinned, the toolchains that build Python and JavaScript
# transforms: componentize-py (PyPI, in a venv) and jco + componentize-js (npm). The versions
# are pinned in guest-sdk/python/build.sh and guest-sdk/js/build.sh, which install them on
# first use into a cache outside the clone ($SLUICE_TOOLCHAINS_DIR, default
# ~/.cache/sluice-build/toolchains), so fresh clones on the same machine reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
guest-sdk/python/build.sh --install
guest-sdk/js/build.sh --install
# The Python clients of the schema tests (Pulsar with its schemas, Confluent's deserializers).
tests/python/install.sh
