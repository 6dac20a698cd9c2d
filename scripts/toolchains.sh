#!/usr/bin/env bash
# Installs, idempotently and pinned, the toolchains that build Python and JavaScript
# transforms: componentize-py (PyPI) in a venv, and jco + componentize-js (npm). They live in a
# cache outside the clone ($SLUICE_TOOLCHAINS_DIR, default ~/.cache/sluice-build/toolchains) so
# fresh clones on the same machine reuse them. Prints nothing when everything is in place.
#
#   scripts/toolchains.sh            install what is missing
#   scripts/toolchains.sh env        print `export` lines for SLUICE_COMPONENTIZE_PY / SLUICE_JCO
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
JCO_VERSION=1.35.0
COMPONENTIZE_JS_VERSION=0.23.0

dir="${SLUICE_TOOLCHAINS_DIR:-$HOME/.cache/sluice-build/toolchains}"
venv="$dir/python-$COMPONENTIZE_PY_VERSION"
node="$dir/node-jco-$JCO_VERSION-cjs-$COMPONENTIZE_JS_VERSION"

if [[ "${1:-}" == env ]]; then
    echo "export SLUICE_COMPONENTIZE_PY=$venv/bin/componentize-py"
    echo "export SLUICE_JCO=$node/node_modules/.bin/jco"
    exit 0
fi

need() { command -v "$1" >/dev/null || { echo "error: $1 is required ($2)" >&2; exit 1; }; }

# A marker written last: an interrupted install is redone, not trusted.
if [[ ! -e "$venv/.installed" ]]; then
    need python3 "Python 3.10+ builds Python transforms"
    echo "==> installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt-get install -y -q python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
    touch "$venv/.installed"
fi

if [[ ! -e "$node/.installed" ]]; then
    need node "Node.js 18+ builds JavaScript transforms"
    need npm "npm installs jco and componentize-js"
    echo "==> installing jco $JCO_VERSION and componentize-js $COMPONENTIZE_JS_VERSION into $node"
    rm -rf "$node"
    mkdir -p "$node"
    (cd "$node" && echo '{"private": true}' >package.json &&
        npm install --silent --no-audit --no-fund --save-exact \
            "@bytecodealliance/jco@$JCO_VERSION" \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION")
    touch "$node/.installed"
fi
