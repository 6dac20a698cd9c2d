# Shared settings for the project's scripts; sourced, not run.
# A build cache outside the clone, reused across fresh clones on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-build/target}"
export SLUICE_KAFKA_BROKERS="${SLUICE_KAFKA_BROKERS:-127.0.0.1:${SLUICE_KAFKA_PORT:-9092}}"
export SLUICE_PULSAR_URL="${SLUICE_PULSAR_URL:-pulsar://127.0.0.1:${SLUICE_PULSAR_PORT:-6650}}"
export SLUICE_PULSAR_LITE_ADDR="${SLUICE_PULSAR_LITE_ADDR:-127.0.0.1:${SLUICE_PULSAR_LITE_PORT:-6651}}"
export PUBSUB_EMULATOR_HOST="${PUBSUB_EMULATOR_HOST:-127.0.0.1:${SLUICE_PUBSUB_PORT:-8085}}"
