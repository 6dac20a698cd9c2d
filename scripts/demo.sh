#!/usr/bin/env bash
# The main job, end to end: local brokers up, sample guests built, a pipeline
# Pulsar → redact (email, phone) → router (by region) → Kafka running, sample orders published
# to Pulsar, and the transformed records read back from Kafka and shown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
started_at=$SECONDS
step() { printf '\n==> [%d s] %s\n' $((SECONDS - started_at)) "$*"; }

step "toolchain and brokers (first run: Debian packages, the wasm32-wasip2 target, Kafka and Pulsar from Maven Central, about a minute)"
scripts/brokers.sh setup
source scripts/env.sh # mold, if setup just installed it
started_brokers=false
if ! scripts/brokers.sh status --quiet; then
    scripts/brokers.sh up
    started_brokers=true
fi
sluice_pid=""
cleanup() {
    if [ -n "$sluice_pid" ] && kill -0 "$sluice_pid" 2>/dev/null; then
        kill -TERM "$sluice_pid"; wait "$sluice_pid" || true
    fi
    if $started_brokers; then scripts/brokers.sh down; fi
}
trap cleanup EXIT

step "build the sample guests (examples/, wasm32-wasip2 components; first run: about a minute)"
(cd examples && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" cargo build --release)
guests="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
ls -l "$guests"/{passthrough,json_filter,redact,router}.wasm

step "build sluice (first run: 7-14 minutes on 2 cores; later runs: seconds)"
cargo build -p sluice --bin sluice -p sluice-tests --bin sluice-dev
sluice="$CARGO_TARGET_DIR/debug/sluice"
dev="$CARGO_TARGET_DIR/debug/sluice-dev"
"$sluice" check "$guests/redact.wasm"

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
