#!/usr/bin/env bash
# Runs the transform's unit tests natively (plain python3, no component).
set -euo pipefail
cd "$(dirname "$0")"
python3 -B -m unittest -v
