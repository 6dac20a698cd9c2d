#!/usr/bin/env bash
# Builds a JavaScript transform into a WebAssembly component with jco + componentize-js
# (pinned below, installed once into a cache outside the project: $SLUICE_TOOLCHAINS_DIR,
# default ~/.cache/sluice-build/toolchains).
#
#   build.sh [APP.js [OUT.wasm]]   APP.js (default: app.js beside this script) imports from
#                                  "./sluice.js" and calls transform(...); OUT defaults to
#                                  <APP.js's directory>/<its name>.wasm
#   build.sh --install           only install the toolchain
#
# The SDK (sluice.js, bundle.mjs, componentize.mjs) and the WIT (wit/) are taken from beside this script, else
# from the Sluice repository layout (guest-sdk/js/, wit/). Only the WASI features the SDK
# needs are kept (stdio for console output, clocks, random); http and fetch-event are left
# out, so the component imports nothing the Sluice sandbox refuses.
set -euo pipefail
JCO_VERSION=1.35.0
COMPONENTIZE_JS_VERSION=0.23.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_dir="${SLUICE_TOOLCHAINS_DIR:-$HOME/.cache/sluice-build/toolchains}/node-jco-$JCO_VERSION-cjs-$COMPONENTIZE_JS_VERSION"

if [[ ! -e "$node_dir/.installed" ]]; then
    command -v npm >/dev/null || { echo "error: Node.js 18+ with npm is required" >&2; exit 1; }
    echo "==> installing jco $JCO_VERSION and componentize-js $COMPONENTIZE_JS_VERSION into $node_dir" >&2
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    (cd "$node_dir" && echo '{"private": true}' >package.json &&
        npm install --silent --no-audit --no-fund --save-exact \
            "@bytecodealliance/jco@$JCO_VERSION" \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2)
    touch "$node_dir/.installed"
fi
[[ "${1:-}" == --install ]] && exit 0
[[ $# -le 2 ]] || { echo "usage: $0 [APP.js [OUT.wasm]] | --install" >&2; exit 2; }

app="${1:-$here/app.js}"
app_dir="$(cd "$(dirname "$app")" && pwd)"
out="${2:-$app_dir/$(basename "$app_dir").wasm}"
wit="$here/wit"
[[ -d "$wit" ]] || wit="$(cd "$here/../.." && pwd)/wit/sluice-transform@0.2.0"
mkdir -p "$(dirname "$out")"
bundle="$(mktemp --suffix=.js)"
trap 'rm -f "$bundle"' EXIT
node "$here/bundle.mjs" "$here/sluice.js" "$app" >"$bundle"
node "$here/componentize.mjs" "$node_dir/node_modules" "$bundle" "$wit" "$out"
