#!/usr/bin/env bash
# The whole test suite: toolchain, lint gate, unit tests and integration tests against the real
# brokers (Apache Kafka, Apache Pulsar, Google's Pub/Sub emulator) and Apicurio Registry (the
# schema tests); all started here through scripts/brokers.sh if they are not running, and then
# stopped again by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
started_at=$SECONDS
step_started=$SECONDS
step() {
    if ((SECONDS > step_started)); then printf '    (%d s)\n' $((SECONDS - step_started)); fi
    step_started=$SECONDS
    printf '\n==> %s\n' "$*"
}

step "toolchain and brokers (first run: Debian packages, the wasm32-wasip2 target, Kafka and Pulsar from Maven Central, about a minute)"
scripts/brokers.sh setup
source scripts/env.sh # mold, if setup just installed it
if ! scripts/brokers.sh status --quiet; then
    trap 'scripts/brokers.sh down' EXIT
    scripts/brokers.sh up
fi

step "toolchains for Python and JavaScript transforms, and the schema tests' Python clients (pinned; first run: about two minutes)"
scripts/toolchains.sh

step "format"
cargo fmt --all -- --check
(cd examples && cargo fmt --all -- --check)
(cd tests/guests && cargo fmt --all -- --check)
(cd fuzz && cargo fmt --all -- --check)

step "Kubernetes manifests against the API's JSON schemas (kubeconform; no cluster here; first run: about a minute)"
scripts/kubeconform.sh

step "crate boundaries: the engine and the pipeline build with no broker client and no protoc"
broker_clients='^(rdkafka(-sys)?|pulsar|google-cloud-[a-z-]+|gcloud-[a-z-]+|prost-build|tonic-build|protobuf-src|protoc-[a-z-]+) v'
for crate in sluice-engine sluice-pipeline; do
    found=$(cargo tree --locked -p "$crate" -e normal,build --prefix none --format '{p}' \
        | grep -E "$broker_clients" | sort -u || true)
    if [[ -n "$found" ]]; then
        echo "error: $crate must not depend on a broker client or a protoc user (docs/architecture.md), but its tree has:" >&2
        echo "$found" >&2
        exit 1
    fi
done

step "clippy (first run: builds the whole workspace, 7-14 minutes on 2 cores)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
(cd examples && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" cargo clippy --release --locked -- -D warnings)
(cd tests/guests && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" cargo clippy --release --locked -- -D warnings)

step "build the sluice binary (the tests run it as a child process)"
cargo build --locked -p sluice --bin sluice

step "guest unit tests (native)"
(cd examples && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests-native" \
    cargo test --locked --target "$(rustc -vV | sed -n 's/^host: //p')")

step "Python and JavaScript guest unit tests (native)"
(cd examples/redact-python && PYTHONPATH=../../guest-sdk/python python3 -B -m unittest -q)
(cd examples/windowed-count-python && PYTHONPATH=../../guest-sdk/python python3 -B -m unittest -q)
(cd examples/redact-js && node --test)

step "workspace tests (integration tests use the brokers)"
cargo test --workspace --all-features --locked -- --show-output \
    --skip fencing::exactly_once_throughput_against_at_least_once_is_printed

# Alone, after the rest: a throughput figure taken while other tests load the cores says little.
step "exactly-once against at-least-once throughput, printed (not asserted), with nothing beside it"
cargo test --workspace --all-features --locked -- --exact --show-output \
    fencing::exactly_once_throughput_against_at_least_once_is_printed

step "fuzz smoke run: a few seconds per target (scripts/fuzz.sh; config_parser's first build is long)"
scripts/fuzz.sh 5

step "benchmark harness, smoke mode (tiny N: checks that it runs, not the figures)"
bench/run.sh --smoke

step "done"
echo "all tests passed in $((SECONDS - started_at)) s"
