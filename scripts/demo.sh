#!/usr/bin/env bash
# The main job, end to end: local brokers up, sample guests built, a pipeline
# Pulsar → redact (email, phone) → router (by region) → Kafka running, sample orders published
# to Pulsar, and the transformed records read back from Kafka and shown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
started_at=$SECONDS
step() { printf '\n==> [%d s] %s\n' $((SECONDS - started_at)) "$*"; }

step "toolchain (first run: Debian packages such as protoc and mold, the wasm32-wasip2 target)"
scripts/brokers.sh toolchain
source scripts/env.sh # mold, if it was just installed
sluice_pid=""
started_brokers=false
brokers_job=""
cleanup() {
    if [ -n "$sluice_pid" ] && kill -0 "$sluice_pid" 2>/dev/null; then
        kill -TERM "$sluice_pid"; wait "$sluice_pid" || true
    fi
    if [ -n "$brokers_job" ]; then wait "$brokers_job" 2>/dev/null || true; fi
    if $started_brokers; then scripts/brokers.sh down; fi
}
trap cleanup EXIT
if ! scripts/brokers.sh status --quiet; then
    # Downloading and starting the brokers needs the network and a few seconds of CPU; building
    # needs the CPU: both at once. Their lines are marked [brokers].
    step "brokers: Apache Kafka, Apache Pulsar, the Pub/Sub emulator, set up and started in the background (first run: Kafka and Pulsar from Maven Central, about a minute)"
    started_brokers=true
    (scripts/brokers.sh up 2>&1 | sed -u 's/^/    [brokers] /') &
    brokers_job=$!
fi

step "build the sample guests (examples/, wasm32-wasip2 components; first run: about a minute)"
(cd examples && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" cargo build --release)
guests="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
ls -l "$guests"/{passthrough,json_filter,redact,router}.wasm

step "build sluice (first run: 7-14 minutes on 2 cores; later runs: seconds)"
cargo build -p sluice --bin sluice -p sluice-test-brokers --bin sluice-dev
sluice="$CARGO_TARGET_DIR/debug/sluice"
dev="$CARGO_TARGET_DIR/debug/sluice-dev"
"$sluice" check "$guests/redact.wasm"

if [ -n "$brokers_job" ]; then
    step "waiting for the brokers"
    wait "$brokers_job"
    brokers_job=""
    scripts/brokers.sh status
fi

run="demo-$(date +%s)"
mkdir -p .sluice-dev
config=".sluice-dev/$run.toml"
cat > "$config" <<TOML
[[pipeline]]
name = "orders"

[pipeline.source]
kind = "pulsar"
url = "$SLUICE_PULSAR_URL"
topic = "persistent://public/default/$run-orders"
subscription = "sluice-$run"

[[pipeline.transform]]
component = "$guests/redact.wasm"
config = { fields = "email,phone" }

[[pipeline.transform]]
component = "$guests/router.wasm"
config = { field = "region", prefix = "$run-orders-" }

[pipeline.sink]
kind = "kafka"
brokers = "$SLUICE_KAFKA_BROKERS"
topic = "$run-orders-other"
dead_letter_topic = "$run-orders-dlq"
create_topics = true
TOML
step "pipeline config ($config)"
cat "$config"

step "start: sluice run --config $config"
"$sluice" run --config "$config" &
sluice_pid=$!

step "publish 9 sample orders to Pulsar (one is not JSON)"
"$dev" publish-orders --topic "persistent://public/default/$run-orders" --count 9

step "read the transformed records back from Kafka"
"$dev" read --count 9 --timeout-secs 90 \
    --topic "$run-orders-eu" --topic "$run-orders-us" --topic "$run-orders-apac" \
    --topic "$run-orders-dlq"

step "stop sluice (SIGTERM: drains in-flight records, exits 0)"
kill -TERM "$sluice_pid"; wait "$sluice_pid"; sluice_pid=""
echo "demo finished in $((SECONDS - started_at)) s"
