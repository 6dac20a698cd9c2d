#!/usr/bin/env bash
# Builds a Python transform into a WebAssembly component with componentize-py (pinned below,
# installed once into a cache outside the project: $SLUICE_TOOLCHAINS_DIR, default
# ~/.cache/sluice-build/toolchains).
#
#   build.sh [APP_DIR [OUT.wasm]]  APP_DIR (default: beside this script) holds app.py, the
#                                  module with the @transform function; OUT defaults to
#                                  APP_DIR/<APP_DIR's name>.wasm
#   build.sh --install           only install the toolchain
#
# The SDK (sluice_sdk/) and the WIT (wit/) are taken from beside this script, else from the
# Sluice repository layout (guest-sdk/python/, wit/).
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SLUICE_TOOLCHAINS_DIR:-$HOME/.cache/sluice-build/toolchains}/python-$COMPONENTIZE_PY_VERSION"

# A marker written last: an interrupted install is redone, not trusted.
if [[ ! -e "$venv/.installed" ]]; then
    command -v python3 >/dev/null || { echo "error: python3 (3.10+) is required" >&2; exit 1; }
    echo "==> installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt-get install -y -q python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    touch "$venv/.installed"
fi
[[ "${1:-}" == --install ]] && exit 0
[[ $# -le 2 ]] || { echo "usage: $0 [APP_DIR [OUT.wasm]] | --install" >&2; exit 2; }

# No __pycache__ beside the sources (componentize-py imports them while building).
export PYTHONDONTWRITEBYTECODE=1
app_dir="$(cd "${1:-$here}" && pwd)"
out="${2:-$app_dir/$(basename "$app_dir").wasm}"
wit="$here/wit"
[[ -d "$wit" ]] || wit="$(cd "$here/../.." && pwd)/wit/sluice-transform@0.2.0"
[[ -f "$app_dir/app.py" ]] || { echo "error: $app_dir has no app.py" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
"$venv/bin/componentize-py" --quiet -d "$wit" -w transformer componentize \
    -p "$here" -p "$app_dir" app -o "$out"
