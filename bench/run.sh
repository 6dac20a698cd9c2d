#!/usr/bin/env bash
# Benchmarks Sluice side by side with its peers (bench/README.md says what and how):
#   1. the transform engine alone (criterion, engine/benches/engine.rs),
#   2. end to end through the local brokers: Sluice (no transform, identity guest, redact guest),
#      a Python Pulsar bridge, quixstreams' PubSubSource, and the raw ceilings (bench/driver.py).
# Writes bench/results/latest.{md,png,json}.
#
# Usage: bench/run.sh [--smoke] [driver options, e.g. --sources pulsar --sizes 100]
#   --smoke   tiny N, debug build, results in .sluice-dev/bench-smoke; checks the harness works
#             (every contender moves every record), never the figures. scripts/test.sh runs it.
#   --flamegraph DIR (a driver option): perf + inferno flame graphs of each Sluice contender,
#             installed here when missing (apt linux-perf, cargo install inferno).
# Uses running brokers (scripts/brokers.sh) or starts them and stops them again.
# SLUICE_BENCH_VENV: the Python environment (default $SLUICE_BUILD_CACHE/bench-venv, i.e.
# ~/.cache/sluice-build/bench-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
step() { printf '\n==> %s\n' "$*" >&2; }

mode=full
if [[ ${1:-} = --smoke ]]; then
    mode=smoke
    shift
fi

# The Python side, pinned, in a venv outside the clone (reused by every run and CI).
venv=${SLUICE_BENCH_VENV:-$SLUICE_BUILD_CACHE/bench-venv}
wanted=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$wanted" ]]; then
    step "installing the benchmark's Python packages into $venv (first run: about a minute)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
    echo "$wanted" >"$venv/.requirements.sha256"
fi

if [[ " $* " = *" --flamegraph "* ]]; then
    if ! command -v perf >/dev/null; then
        step "installing perf (apt linux-perf) for --flamegraph"
        as_root=(); [[ $(id -u) = 0 ]] || as_root=(sudo)
        "${as_root[@]}" apt-get update -q && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends linux-perf
    fi
    if ! command -v inferno-flamegraph >/dev/null; then
        step "installing inferno (cargo install inferno --locked) for --flamegraph"
        cargo install --quiet --locked inferno
    fi
fi

step "building the example guests (release, wasm32-wasip2)"
guest_target=$CARGO_TARGET_DIR/guests
(cd examples && CARGO_TARGET_DIR="$guest_target" cargo build --quiet --release --locked --target wasm32-wasip2)
guests=$guest_target/wasm32-wasip2/release

if [[ $mode = smoke ]]; then
    step "building sluice (debug: the smoke run checks the harness, not the figures)"
    cargo build --quiet --locked -p sluice --bin sluice
    sluice=$CARGO_TARGET_DIR/debug/sluice
    out=${SLUICE_DEV_DIR:-.sluice-dev}/bench-smoke
    rm -rf "$out"
    driver_args=(--sizes 100 --records pulsar:100=300,pubsub:100=300 --latency-rate 100 --latency-seconds 1
        --stall-seconds 10 --label "smoke (debug build, tiny N: figures mean nothing)")
else
    step "building sluice (release)"
    cargo build --quiet --release --locked -p sluice --bin sluice
    sluice=$CARGO_TARGET_DIR/release/sluice
    out=bench/results
    driver_args=(--records "${SLUICE_BENCH_RECORDS:-pulsar:100=100000,pulsar:1024=20000,pubsub:100=10000,pubsub:1024=5000}"
        --label "full run")
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")

if ! scripts/brokers.sh status --quiet; then
    trap 'scripts/brokers.sh down' EXIT
    scripts/brokers.sh up
fi
eval "$(scripts/brokers.sh env)"
kafka_version=$(sed -n 's:.*<broker.version>\(.*\)</broker.version>.*:\1:p' scripts/brokers/kafka/pom.xml)
pulsar_version=$(sed -n 's:.*<broker.version>\(.*\)</broker.version>.*:\1:p' scripts/brokers/pulsar/pom.xml)
brokers_label="Apache Kafka $kafka_version (KRaft, one node), Apache Pulsar $pulsar_version standalone, Google's Pub/Sub emulator"

if [[ $mode = smoke ]]; then
    step "transform engine: every criterion case once (cargo test --bench engine)"
    SLUICE_BENCH_GUESTS=$guests cargo test --quiet --locked -p sluice-engine --bench engine
    engine_args=()
else
    step "transform engine (criterion: cargo bench -p sluice-engine --bench engine)"
    SLUICE_BENCH_GUESTS=$guests cargo bench --quiet --locked -p sluice-engine --bench engine
    engine_args=(--engine "$CARGO_TARGET_DIR/criterion")
fi

step "end to end: Sluice and peers into Kafka (logs and configs: $work)"
"$venv/bin/python" bench/driver.py --sluice "$sluice" --guests "$guests" --out "$out" --work "$work" \
    --brokers "$brokers_label" "${driver_args[@]}" "${engine_args[@]}" "$@"
cat "$out/latest.md"
rm -rf "$work"
