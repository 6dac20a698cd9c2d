# Shared settings for the project's scripts; sourced, not run.
# Caches outside the clone, reused across fresh clones on the same machine: the Rust build
# (CARGO_TARGET_DIR), the brokers' jars, the Python/JavaScript toolchains, the benchmark's venv.
# Point SLUICE_BUILD_CACHE (and SLUICE_MAVEN_REPO, Maven's local repository) at an empty
# directory to see what a first run on a new machine does.
export SLUICE_BUILD_CACHE="${SLUICE_BUILD_CACHE:-$HOME/.cache/sluice-build}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_BUILD_CACHE/target}"
export SLUICE_TOOLCHAINS_DIR="${SLUICE_TOOLCHAINS_DIR:-$SLUICE_BUILD_CACHE/toolchains}"
# Where the brokers of scripts/brokers.sh listen (the tests, the demo and the benchmarks read these).
export SLUICE_KAFKA_BROKERS="${SLUICE_KAFKA_BROKERS:-127.0.0.1:${SLUICE_KAFKA_PORT:-9092}}"
export SLUICE_PULSAR_URL="${SLUICE_PULSAR_URL:-pulsar://127.0.0.1:${SLUICE_PULSAR_PORT:-6650}}"
export SLUICE_PULSAR_ADMIN_URL="${SLUICE_PULSAR_ADMIN_URL:-http://127.0.0.1:${SLUICE_PULSAR_HTTP_PORT:-8080}}"
# The secured listeners (Kafka SASL_SSL, Pulsar TLS + token) and their credentials' directory.
export SLUICE_KAFKA_SECURE_BROKERS="${SLUICE_KAFKA_SECURE_BROKERS:-127.0.0.1:${SLUICE_KAFKA_SECURE_PORT:-9094}}"
export SLUICE_PULSAR_TLS_URL="${SLUICE_PULSAR_TLS_URL:-pulsar+ssl://127.0.0.1:${SLUICE_PULSAR_TLS_PORT:-6651}}"
export PUBSUB_EMULATOR_HOST="${PUBSUB_EMULATOR_HOST:-127.0.0.1:${SLUICE_PUBSUB_PORT:-8085}}"
# Apicurio Registry's Confluent-compatible API (scripts/brokers.sh's `registry`).
export SLUICE_REGISTRY_URL="${SLUICE_REGISTRY_URL:-http://127.0.0.1:${SLUICE_REGISTRY_PORT:-8081}/apis/ccompat/v7}"
# mold links the large debug binaries in a few seconds instead of tens: `mold -run` swaps it in
# for the system linker without changing any flag, so the build cache stays valid either way.
# scripts/brokers.sh setup installs it; SLUICE_NO_MOLD=1 links with the system linker.
if command -v mold >/dev/null && [[ -z ${SLUICE_NO_MOLD:-} ]]; then
    cargo() { mold -run cargo "$@"; }
fi
