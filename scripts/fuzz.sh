#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer; fuzz/ is its own workspace built with nightly): builds
# each target and runs it for a while on its corpus (fuzz/corpus/<target>, kept in the repo),
# printing executions and CPU seconds; a crash fails the run and leaves its input in
# fuzz/artifacts/<target>/. docs/security.md says what each target checks.
#
# Usage: scripts/fuzz.sh [seconds per target (default 5)] [target...]
#   targets: exec_json_lines source_metadata flat_batch config_parser (default: all)
#   config_parser builds the whole runtime (wasmtime, librdkafka, the Pulsar and Pub/Sub
#   clients) instrumented: the first build takes a long while; it builds in the dev profile
#   without a sanitizer (Rust code; the C libraries are not on its path), the others in
#   release with AddressSanitizer, cargo fuzz's default.
# Environment: SLUICE_FUZZ_TARGET_DIR (default $CARGO_TARGET_DIR/fuzz) holds the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
seconds=${1:-5}
[[ $# -gt 0 ]] && shift
targets=("$@")
((${#targets[@]} > 0)) || targets=(exec_json_lines source_metadata flat_batch config_parser)
export CARGO_TARGET_DIR=${SLUICE_FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR/fuzz}

if ! rustup toolchain list | grep -q '^nightly'; then
    # libFuzzer's instrumentation needs nightly flags (-Z); only the fuzz/ workspace uses it.
    echo "==> installing the nightly Rust toolchain for cargo fuzz (once, about a minute)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (once)"
    cargo install cargo-fuzz --locked
fi

cd fuzz
for target in "${targets[@]}"; do
    case $target in
        config_parser) build_args=(--dev -s none --features config) profile=debug ;;
        *) build_args=() profile=release ;;
    esac
    echo "==> fuzz $target: build"
    cargo +nightly fuzz build --fuzz-dir . "${build_args[@]}" "$target"
    binary=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/$profile/$target
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "==> fuzz $target: ${seconds} s"
    log=$(mktemp)
    # The corpus directory is read and extended: what the run found stays for the next one.
    if ! /usr/bin/time -f "cpu_seconds=%U+%S" -o "$log.time" "$binary" "corpus/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: fuzz target $target failed; its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $target: $executions executions, $(cat "$log.time"), corpus $(find "corpus/$target" -type f | wc -l) inputs, no crash"
    rm -f "$log" "$log.time"
done
