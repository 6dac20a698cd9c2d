#!/usr/bin/env bash
# Per-record cost of the Python and JavaScript SDKs before and after the flat batch ABI, in one
# run: the identity transform of bench/languages/ built with the SDKs of this tree
# (sluice:transform@0.2.0) and with those of an earlier commit (default e5a73d9, the last whose
# Python and JavaScript SDKs target 0.1.0), then the engine bench's `languages` cases
# (engine/benches/engine.rs, criterion, batches of 100 records) and the Rust identity guests
# on both versions for reference. Prints ns/record and the ratio before/after.
#
# Usage: bench/languages.sh [--dev] [--before REV]
#   --dev     build the bench with the dev profile instead of release (a busy machine: the
#             guests' code is compiled by the same optimised Cranelift either way, only the
#             host's part is slower)
#   --before  the commit whose SDKs give the "before" components
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
profile=bench
before=e5a73d9
while [[ $# -gt 0 ]]; do
    case $1 in
    --dev) profile=dev ;;
    --before) before=$2; shift ;;
    *) echo "usage: $0 [--dev] [--before REV]" >&2; exit 2 ;;
    esac
    shift
done
step() { printf '\n==> %s\n' "$*" >&2; }

guests=$CARGO_TARGET_DIR/guests/languages-bench
mkdir -p "$guests"
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git archive "$before" guest-sdk/python guest-sdk/js wit | tar -x -C "$old"

step "building the identity guests: SDKs of this tree and of $before"
guest-sdk/python/build.sh bench/languages/identity-python "$guests/identity_py.wasm"
"$old/guest-sdk/python/build.sh" bench/languages/identity-python "$guests/identity_py_v0_1.wasm"
guest-sdk/js/build.sh bench/languages/identity-js/app.js "$guests/identity_js.wasm"
"$old/guest-sdk/js/build.sh" bench/languages/identity-js/app.js "$guests/identity_js_v0_1.wasm"
for guest in "$guests"/*.wasm; do
    cargo run --quiet --locked -p sluice --bin sluice -- check "$guest" |
        sed -n "s|^world: *|$(basename "$guest"): |p"
done

step "criterion: the language cases and the Rust identity guests, batch 100 ($profile profile)"
SLUICE_BENCH_LANGUAGE_GUESTS=$guests cargo bench --locked -p sluice-engine --bench engine \
    --profile "$profile" -- 'languages/|identity-guest'

step "ns per record at batch 100 (criterion's mean per batch / 100)"
python3 - "$CARGO_TARGET_DIR/criterion" <<'PY'
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])

def ns(group, case):
    path = root / group / case / "100" / "new" / "estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"] / 100

for label, group, name in [
    ("Python", "languages", "identity-python"),
    ("JavaScript", "languages", "identity-js"),
    ("Rust (reference)", "identity", "identity-guest"),
]:
    before, after = ns(group, name + "-0.1"), ns(group, name)
    print(f"{label:17} 0.1.0 {before:10,.0f} ns/record   0.2.0 {after:10,.0f} ns/record   "
          f"before/after {before / after:.2f}x")
PY
