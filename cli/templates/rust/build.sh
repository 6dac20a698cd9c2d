#!/usr/bin/env bash
# Builds the component: {{name}}.wasm (installs the wasm32-wasip2 target once).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_name}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
