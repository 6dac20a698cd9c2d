#!/usr/bin/env bash
# Runs the transform's unit tests natively (plain Node.js, no component).
set -euo pipefail
cd "$(dirname "$0")"
node --test
