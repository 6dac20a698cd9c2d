#!/usr/bin/env bash
# Runs the transform's unit tests natively (no component, no host).
set -euo pipefail
cd "$(dirname "$0")"
cargo test
