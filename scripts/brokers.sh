#!/usr/bin/env bash
# Installs, starts and stops the brokers Sluice is developed and tested against, on 127.0.0.1 only:
#   kafka    Apache Kafka 4.4.0, one node in KRaft mode     SLUICE_KAFKA_PORT 9092
#            (broker and controller in one JVM)             SLUICE_KAFKA_CONTROLLER_PORT 9093
#            SASL_SSL listener (SCRAM-SHA-256/512 users)    SLUICE_KAFKA_SECURE_PORT 9094
#   pulsar   Apache Pulsar 4.2.4 standalone (one broker,    SLUICE_PULSAR_PORT 6650
#            one in-process bookie, RocksDB metadata)       SLUICE_PULSAR_HTTP_PORT 8080 (admin API)
#                                                           SLUICE_PULSAR_BOOKIE_PORT 3181
#            TLS with token authentication                  SLUICE_PULSAR_TLS_PORT 6651
#                                                           SLUICE_PULSAR_HTTPS_PORT 8443
#   pubsub   Google's Pub/Sub emulator (in memory)          SLUICE_PUBSUB_PORT 8085
#   registry Apicurio Registry 3.3.3, in-memory storage;    SLUICE_REGISTRY_PORT 8081
#            its Confluent-compatible API is what Sluice     SLUICE_REGISTRY_MANAGEMENT_PORT 8082
#            and Confluent clients speak (/apis/ccompat/v7)  (health, metrics)
#   oauth2   the local OAuth2 issuer (python3, scripts/     SLUICE_OAUTH2_PORT 8090
#            brokers/oauth2-issuer.py): Pulsar's OAuth2 client credentials
# The secured listeners' certificates, SCRAM password and tokens are made on first use into
# $SLUICE_DEV_DIR/credentials (scripts/brokers/credentials.sh).
# Kafka and Pulsar are assembled from their jars on Maven Central (poms and configs in
# scripts/brokers/); Apicurio is its release archive from Maven Central (sha512-checked).
# What runs, how, and why: docs/local-brokers.md.
#
# Usage: scripts/brokers.sh up | down | status [--quiet] | setup | toolchain | env | clean
#                           start <broker> | stop <broker> [--kill] | restart <broker> [--kill]
#                           pause <broker> | resume <broker>
#        (also start-kafka, stop-pulsar, restart-pubsub, ...)
#   setup     install what is missing (apt packages, the wasm32-wasip2 target, the brokers' jars)
#   toolchain only what the build needs (apt packages, the wasm32-wasip2 target)
#   up        setup, then start the brokers and wait until each one answers
#   down      stop every broker this script started (SIGTERM, SIGKILL after a grace period)
#   status    one line per broker: PID, port, resident memory, threads (exit 1 if one is down)
#   env       the variables the tests, the demo and the benchmarks read, as `export` lines
#   clean     down, then delete the brokers' data and logs
#   stop/restart --kill   SIGKILL instead of SIGTERM (crash tests)
#   pause/resume  SIGSTOP / SIGCONT: the broker keeps its connections open and answers nothing
#             (a stuck broker, for tests of what a stuck sink does)
#
# Environment:
#   SLUICE_BROKERS        the brokers up/setup/status/env handle (default "kafka pulsar pubsub registry oauth2")
#   SLUICE_DEV_DIR        data, logs and PID files (default <repo>/.sluice-dev)
#   SLUICE_BUILD_CACHE    caches outside the clone (default ~/.cache/sluice-build)
#   SLUICE_BROKERS_CACHE  the brokers' jars (default $SLUICE_BUILD_CACHE/brokers/<name>-<version>)
#   SLUICE_MAVEN_REPO     Maven's local repository (default Maven's own, ~/.m2/repository)
#   SLUICE_JAVA           the java binary (default $JAVA_HOME/bin/java, else java on PATH)
#   SLUICE_JAVA21         a java of version 21 or newer for the registry (Apicurio 3 is built for
#                         Java 21; default: the first one in JAVA_HOME, PATH or /usr/lib/jvm)
#   SLUICE_READY_TIMEOUT  seconds a broker may take to answer after its start (default 180)
# Only processes recorded in the PID files are ever signalled.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$repo_dir/scripts/env.sh"
config_dir=$repo_dir/scripts/brokers
dev_dir=${SLUICE_DEV_DIR:-$repo_dir/.sluice-dev}
data_dir=$dev_dir/data
log_dir=$dev_dir/logs
run_dir=$dev_dir/run
credentials_dir=$dev_dir/credentials
brokers_cache=${SLUICE_BROKERS_CACHE:-$SLUICE_BUILD_CACHE/brokers}
maven_repo=${SLUICE_MAVEN_REPO:-}

kafka_port=${SLUICE_KAFKA_PORT:-9092}
kafka_controller_port=${SLUICE_KAFKA_CONTROLLER_PORT:-9093}
kafka_secure_port=${SLUICE_KAFKA_SECURE_PORT:-9094}
pulsar_port=${SLUICE_PULSAR_PORT:-6650}
pulsar_http_port=${SLUICE_PULSAR_HTTP_PORT:-8080}
pulsar_bookie_port=${SLUICE_PULSAR_BOOKIE_PORT:-3181}
pulsar_tls_port=${SLUICE_PULSAR_TLS_PORT:-6651}
pulsar_https_port=${SLUICE_PULSAR_HTTPS_PORT:-8443}
pubsub_port=${SLUICE_PUBSUB_PORT:-8085}
registry_port=${SLUICE_REGISTRY_PORT:-8081}
registry_management_port=${SLUICE_REGISTRY_MANAGEMENT_PORT:-8082}
oauth2_port=${SLUICE_OAUTH2_PORT:-8090}
selected_brokers=${SLUICE_BROKERS:-kafka pulsar pubsub registry oauth2}
ready_timeout_s=${SLUICE_READY_TIMEOUT:-180}

pubsub_emulator=${SLUICE_PUBSUB_EMULATOR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}

# Small JVMs: serial GC (no GC threads per core), bounded heaps, the client JIT (C1) only.
# Measured on 2 shared cores: C1 only starts Kafka in 8-10 s instead of 13-14 s and Pulsar in
# 12 s instead of 15-17 s, without C2's compile work competing with everything else, and moved
# as much (librdkafka producing 100,000 records of 100 B into Kafka: 0.85-1.0 s, against
# 1.2-1.4 s with C2 while it warms up and 0.7-1.0 s after; a Pulsar consumer taking 100,000:
# 1.40-1.45 s against 1.63-1.65 s).
kafka_java_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)
pulsar_java_opts=(-Xms256m -Xmx512m -XX:MaxDirectMemorySize=256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true
    # From Pulsar's bin/pulsar: Netty and the broker reach into these JDK internals.
    -Dio.netty.tryReflectionSetAccessible=true
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED
    --add-opens java.base/jdk.internal.platform=ALL-UNNAMED
    # The in-process bookie finds its metadata through Pulsar's metadata store.
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver)
# Client JIT only, serial GC and a heap cap: starts in seconds and stays small (docs/local-brokers.md).
pubsub_java_opts="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx512m"
# The same for the registry: ready in about ten seconds, ~270 MB resident.
registry_java_opts=(-Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

# Apicurio Registry's release archive on Maven Central and its published sha512.
registry_version=3.3.3
registry_sha512=dd081e0bb14bb94ac9806eb768667b10a7292a8a75a81cbbfec1c99d920bc35697fc5e567d74b7bf94a0105648b90480842822959815d2965e0dc6c9524c92d3
registry_archive_url=https://repo1.maven.org/maven2/io/apicurio/apicurio-registry-app/$registry_version/apicurio-registry-app-$registry_version-all.tar.gz
# The Confluent-compatible base URL clients use.
registry_url="http://127.0.0.1:$registry_port/apis/ccompat/v7"
oauth2_issuer_url="http://127.0.0.1:$oauth2_port"

# Milliseconds since the epoch (EPOCHREALTIME: bash >= 5; the separator follows the locale).
now_ms() {
    local us=${EPOCHREALTIME//[.,]/}
    echo $((us / 1000))
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

java_bin() {
    if [[ -n ${SLUICE_JAVA:-} ]]; then
        echo "$SLUICE_JAVA"
    elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || die "no java found: apt-get install openjdk-17-jre-headless, or set SLUICE_JAVA"
    fi
}

# A java binary of version 21 or newer (Apicurio Registry 3 needs it; Kafka and Pulsar run on 17).
java21_bin() {
    local candidate version
    for candidate in ${SLUICE_JAVA21:-} ${JAVA_HOME:+$JAVA_HOME/bin/java} "$(command -v java 2>/dev/null)" \
        /usr/lib/jvm/*/bin/java; do
        [[ -n $candidate && -x $candidate ]] || continue
        # `java -version` prints e.g. `openjdk version "25.0.1" ...` on stderr.
        version=$("$candidate" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
        if [[ $version =~ ^[0-9]+$ ]] && ((version >= 21)); then
            echo "$candidate"
            return 0
        fi
    done
    die "Apicurio Registry $registry_version needs Java 21 or newer and none was found (set SLUICE_JAVA21, or install e.g. openjdk-21-jre-headless); or leave the registry out: SLUICE_BROKERS=\"kafka pulsar pubsub\" $0 up"
}

# Runs `command...` in the background with its output in `log`, printing `message` and how long
# it has been running every 15 s until it ends; fails with the log's tail if it fails.
with_progress() {
    local message=$1 log=$2
    shift 2
    local started=$SECONDS pid
    "$@" >"$log" 2>&1 &
    pid=$!
    # A background job ignores ctrl-c: pass it on, so an interrupted step leaves nothing behind.
    trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if (((SECONDS - started) % 15 == 0)); then say "$message: $((SECONDS - started)) s so far"; fi
    done
    trap - INT TERM
    if ! wait "$pid"; then
        tail -n 30 "$log" >&2
        die "$message failed (log: $log)"
    fi
}

# shellcheck source=scripts/brokers/credentials.sh
source "$config_dir/credentials.sh"

# ---------------------------------------------------------------------------------------------
# Installation

# Debian packages the build and the brokers need, by the command each provides: protoc (the
# pulsar crate compiles Pulsar's .proto files at build time), mold (links the large debug
# binaries in seconds), Maven and a Java 17 runtime (Kafka and Pulsar), curl (readiness checks),
# openssl (the secured listeners' certificates, scripts/brokers/credentials.sh).
ensure_packages() {
    local missing=() pair command package
    for pair in protoc:protobuf-compiler mold:mold mvn:maven java:openjdk-17-jre-headless curl:curl python3:python3 openssl:openssl; do
        command=${pair%%:*} package=${pair#*:}
        command -v "$command" >/dev/null || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing Debian packages: ${missing[*]}"
    mkdir -p "$log_dir"
    with_progress "apt-get update" "$log_dir/apt-update.log" as_root apt-get update -q
    with_progress "apt-get install ${missing[*]}" "$log_dir/apt-install.log" \
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_rust_target() {
    # Run from the repo so rustup applies rust-toolchain.toml's pinned toolchain.
    if ! (cd "$repo_dir" && rustup target list --installed | grep -qx wasm32-wasip2); then
        say "adding the wasm32-wasip2 Rust target (rustup target add wasm32-wasip2)"
        (cd "$repo_dir" && rustup target add wasm32-wasip2)
    fi
}

# The version a broker's pom pins (its broker.version property).
broker_version() {
    sed -n 's:.*<broker.version>\(.*\)</broker.version>.*:\1:p' "$config_dir/$1/pom.xml"
}

# Where a broker's jars live: <cache>/<name>-<version>/lib.
broker_home() { echo "$brokers_cache/$1-$(broker_version "$1")"; }

broker_title() {
    case $1 in
        kafka) echo "Apache Kafka $(broker_version kafka)" ;;
        pulsar) echo "Apache Pulsar $(broker_version pulsar)" ;;
    esac
}

# Materialises a broker's classpath from Maven Central (its pom's dependencies, with Maven's
# dependency plugin) unless the cache holds one made from the same pom.
ensure_maven_broker() {
    local broker=$1 home pom_sum
    home=$(broker_home "$broker")
    pom_sum=$(sha256sum "$config_dir/$broker/pom.xml" | cut -d' ' -f1)
    [[ $(cat "$home/.complete" 2>/dev/null) = "$pom_sum" ]] && return 0
    local title maven_args=(-B -ntp) started=$SECONDS
    title=$(broker_title "$broker")
    [[ -n $maven_repo ]] && maven_args+=("-Dmaven.repo.local=$maven_repo")
    say "downloading $title from Maven Central into $home (once per machine; Kafka ~45 MB, Pulsar ~250 MB)"
    mkdir -p "$log_dir" "$brokers_cache"
    rm -rf "$home.partial"
    with_progress "downloading $title" "$log_dir/$broker-install.log" \
        mvn "${maven_args[@]}" -f "$config_dir/$broker/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$home.partial/lib"
    # Written last, so an interrupted download is redone, never trusted.
    echo "$pom_sum" >"$home.partial/.complete"
    rm -rf "$home"
    mv "$home.partial" "$home"
    say "$title: $(find "$home/lib" -name '*.jar' | wc -l) jars, $(du -sh "$home/lib" | cut -f1) in $((SECONDS - started)) s"
}

ensure_pubsub_emulator() {
    if [[ ! -x $pubsub_emulator ]]; then
        cat >&2 <<EOF
error: the Google Cloud Pub/Sub emulator is not installed (expected $pubsub_emulator).
It comes from the Debian package google-cloud-cli-pubsub-emulator in Google's apt repository:
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \\
        | sudo gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg
    echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \\
        | sudo tee /etc/apt/sources.list.d/google-cloud-sdk.list
    sudo apt-get update && sudo apt-get install google-cloud-cli-pubsub-emulator
Or leave Pub/Sub out: SLUICE_BROKERS="kafka pulsar" $0 up
EOF
        exit 1
    fi
}

registry_home() { echo "$brokers_cache/apicurio-$registry_version"; }

# Downloads and unpacks Apicurio's release archive once (sha512-checked) into the brokers' cache.
ensure_registry() {
    local home
    home=$(registry_home)
    [[ -f $home/quarkus-run.jar ]] && return 0
    java21_bin >/dev/null
    mkdir -p "$brokers_cache" "$log_dir"
    local partial=$home.partial started=$SECONDS
    rm -rf "$partial"
    mkdir -p "$partial"
    say "downloading Apicurio Registry $registry_version from Maven Central into $home (once per machine, ~160 MB)"
    with_progress "downloading Apicurio Registry $registry_version" "$log_dir/registry-install.log" \
        curl -fsSL --retry 3 -o "$partial/release.tar.gz" "$registry_archive_url"
    echo "$registry_sha512  $partial/release.tar.gz" | sha512sum --check --quiet - ||
        die "checksum mismatch for $registry_archive_url"
    tar -xzf "$partial/release.tar.gz" -C "$partial"
    rm -f "$partial/release.tar.gz"
    # The archive holds quarkus-run.jar, app/, lib/ and quarkus/, possibly under one directory.
    local root
    root=$(dirname "$(find "$partial" -maxdepth 3 -name quarkus-run.jar -print -quit)")
    [[ -f $root/quarkus-run.jar ]] || die "Apicurio's archive has no quarkus-run.jar"
    rm -rf "$home"
    mv "$root" "$home"
    rm -rf "$partial"
    say "Apicurio Registry $registry_version: $(du -sh "$home" | cut -f1) in $((SECONDS - started)) s"
}

ensure_installed() {
    case $1 in
        kafka | pulsar) ensure_maven_broker "$1" ;;
        pubsub) ensure_pubsub_emulator ;;
        registry) ensure_registry ;;
        oauth2) command -v python3 >/dev/null || die "the OAuth2 issuer needs python3 (apt-get install python3)" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Processes

check_broker_names() {
    local name
    for name in "$@"; do
        case $name in
            kafka | pulsar | pubsub | registry | oauth2) ;;
            *) die "unknown broker: $name (expected kafka, pulsar, pubsub, registry or oauth2)" ;;
        esac
    done
}

port_of() {
    case $1 in
        kafka) echo "$kafka_port" ;;
        pulsar) echo "$pulsar_port" ;;
        pubsub) echo "$pubsub_port" ;;
        registry) echo "$registry_port" ;;
        oauth2) echo "$oauth2_port" ;;
    esac
}

# The ports a broker listens on (all must be free before it starts).
ports_of() {
    case $1 in
        kafka) echo "$kafka_port $kafka_controller_port $kafka_secure_port" ;;
        pulsar) echo "$pulsar_port $pulsar_http_port $pulsar_bookie_port $pulsar_tls_port $pulsar_https_port" ;;
        pubsub) echo "$pubsub_port" ;;
        registry) echo "$registry_port $registry_management_port" ;;
        oauth2) echo "$oauth2_port" ;;
    esac
}

# A string the command line of the broker's process contains: the marker of this checkout's
# broker (its config file), so a stale PID reused by another process, or another checkout's
# broker, is never signalled.
cmdline_marker() {
    case $1 in
        kafka) echo "$data_dir/kafka/server.properties" ;;
        pulsar) echo "$data_dir/pulsar/standalone.conf" ;;
        pubsub) echo pubsub-emulator ;;
        registry) echo "$(registry_home)/quarkus-run.jar" ;;
        oauth2) echo "$config_dir/oauth2-issuer.py" ;;
    esac
}

pid_file() { echo "$run_dir/$1.pid"; }
log_file() { echo "$log_dir/$1.log"; }

# True while the process exists and is not a zombie.
process_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# Prints the PID of the running broker; fails (and drops a stale PID file) when it is not running.
running_pid() {
    local broker=$1 file pid
    file=$(pid_file "$broker")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && process_alive "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cmdline_marker "$broker")"; then
        echo "$pid"
    else
        rm -f "$file"
        return 1
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Kafka answers requests only once it has caught up with its metadata and is unfenced (its port
# accepts connections earlier): an ApiVersions request that gets an answer means it is ready.
kafka_answers() {
    python3 - "$kafka_port" <<'PY' 2>/dev/null
import socket, struct, sys
client = b"sluice-ready"
request = struct.pack(">hhih", 18, 0, 1, len(client)) + client  # ApiVersions v0
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.settimeout(2)
    s.sendall(struct.pack(">i", len(request)) + request)
    header = s.recv(10)
    size, correlation, error = struct.unpack(">iih", header[:10])
    sys.exit(0 if correlation == 1 and error == 0 else 1)
PY
}

# Pulsar is ready when the broker port is open and the admin API lists the default namespace
# (standalone creates it once the broker runs).
pulsar_answers() {
    port_open "$pulsar_port" &&
        curl -sf --max-time 2 "http://127.0.0.1:$pulsar_http_port/admin/v2/namespaces/public" | grep -q 'public/default'
}

broker_ready() {
    case $1 in
        kafka) kafka_answers && port_open "$kafka_secure_port" ;;
        pulsar) pulsar_answers && port_open "$pulsar_tls_port" ;;
        pubsub) curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$pubsub_port/" ;;
        # The Confluent API answers (a fresh registry's subject list is `[]`).
        registry) curl -sf -o /dev/null --max-time 2 "$registry_url/subjects" ;;
        oauth2) curl -sf -o /dev/null --max-time 2 "$oauth2_issuer_url/.well-known/openid-configuration" ;;
    esac
}

# Starts `command...` in the background in `workdir`, logging to the broker's log file, and
# records its PID. `exec` keeps the PID: it is the broker's own, not a wrapper's.
spawn() {
    local broker=$1 workdir=$2
    shift 2
    local log
    log=$(log_file "$broker")
    printf '\n=== %s: starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
    (cd "$workdir" && exec nohup "$@" >>"$log" 2>&1 </dev/null) &
    echo $! >"$(pid_file "$broker")"
}

# Writes a broker's config template with its @...@ placeholders filled in.
render() {
    local template=$1 out=$2
    sed -e "s|@PORT@|$(port_of "${3}")|g" \
        -e "s|@CONTROLLER_PORT@|$kafka_controller_port|g" \
        -e "s|@HTTP_PORT@|$pulsar_http_port|g" \
        -e "s|@SECURE_PORT@|$kafka_secure_port|g" \
        -e "s|@TLS_PORT@|$pulsar_tls_port|g" \
        -e "s|@HTTPS_PORT@|$pulsar_https_port|g" \
        -e "s|@CREDENTIALS_DIR@|$credentials_dir|g" \
        -e "s|@DATA_DIR@|$data_dir/kafka/logs|g" \
        "$template" >"$out"
}

launch() {
    local broker=$1 workdir=$data_dir/$1 java
    mkdir -p "$workdir"
    case $broker in
        kafka)
            java=$(java_bin)
            local home
            home=$(broker_home kafka)
            render "$config_dir/kafka/server.properties" "$workdir/server.properties" kafka
            cp "$config_dir/kafka/log4j2.properties" "$workdir/log4j2.properties"
            # SCRAM users can only be added at format time here (the jars hold no kafka-configs
            # tool): storage formatted before them, or for other credentials, is formatted anew
            # (a development broker's data are test data).
            local scram_marker=$workdir/logs/sluice-scram-password
            if [[ -f $workdir/logs/meta.properties ]] &&
                ! cmp -s "$scram_marker" "$credentials_dir/kafka-scram-password"; then
                say "kafka: its storage predates the SCRAM user of $credentials_dir; formatting it anew"
                rm -rf "$workdir/logs"
            fi
            # KRaft storage is formatted once, with a cluster id of its own.
            if [[ ! -f $workdir/logs/meta.properties ]]; then
                local cluster_id scram_arguments
                cluster_id=$("$java" -cp "$home/lib/*" kafka.tools.StorageTool random-uuid 2>>"$(log_file kafka)")
                mapfile -t scram_arguments < <(kafka_scram_arguments)
                "$java" -Dlog4j2.configurationFile="$workdir/log4j2.properties" -cp "$home/lib/*" \
                    kafka.tools.StorageTool format -t "$cluster_id" -c "$workdir/server.properties" \
                    "${scram_arguments[@]}" --ignore-formatted >>"$(log_file kafka)" 2>&1 ||
                    die "kafka: formatting its storage failed (log: $(log_file kafka))"
                cp "$credentials_dir/kafka-scram-password" "$scram_marker"
            fi
            spawn kafka "$workdir" "$java" "${kafka_java_opts[@]}" \
                -Dlog4j2.configurationFile="$workdir/log4j2.properties" \
                -cp "$home/lib/*" kafka.Kafka "$workdir/server.properties"
            ;;
        pulsar)
            java=$(java_bin)
            render "$config_dir/pulsar/standalone.conf" "$workdir/standalone.conf" pulsar
            cp "$config_dir/pulsar/log4j2.properties" "$workdir/log4j2.properties"
            spawn pulsar "$workdir" "$java" "${pulsar_java_opts[@]}" \
                -Dlog4j2.configurationFile="$workdir/log4j2.properties" \
                -cp "$(broker_home pulsar)/lib/*" org.apache.pulsar.PulsarStandaloneStarter \
                --config "$workdir/standalone.conf" --no-functions-worker \
                --metadata-dir "$workdir/metadata" --bookkeeper-dir "$workdir/bookkeeper" \
                --bookkeeper-port "$pulsar_bookie_port"
            ;;
        pubsub)
            # The emulator's launcher script execs java, so the recorded PID is java's.
            spawn pubsub "$workdir" env JAVA_OPTS="$pubsub_java_opts" "$pubsub_emulator" \
                --host=127.0.0.1 --port="$pubsub_port"
            ;;
        registry)
            # The management interface (health, metrics) would listen on 0.0.0.0:9000: keep it
            # on loopback. Compatibility rules are per subject (PUT /config/<subject>), as in
            # Confluent's registry; the global default stays NONE.
            spawn registry "$workdir" "$(java21_bin)" "${registry_java_opts[@]}" \
                -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$registry_port" \
                -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$registry_management_port" \
                -jar "$(registry_home)/quarkus-run.jar"
            ;;
        oauth2)
            # Clients and signing key: credentials.sh; the tokens it issues are appended to
            # issued-tokens (the tests check that none shows in what Sluice prints).
            spawn oauth2 "$workdir" python3 "$config_dir/oauth2-issuer.py" "$oauth2_port" \
                "$credentials_dir/oauth2-clients.json" "$credentials_dir/pulsar-token-secret.key" \
                "$workdir/issued-tokens"
            ;;
    esac
}

start_broker() {
    local broker=$1 pid port started_ms
    port=$(port_of "$broker")
    if pid=$(running_pid "$broker"); then
        say "$broker: already running (pid $pid, 127.0.0.1:$port)"
        return 0
    fi
    # A broker killed a moment ago may still be letting go of its ports.
    for port in $(ports_of "$broker"); do
        local tries=50
        while port_open "$port" && ((tries-- > 0)); do sleep 0.1; done
        if port_open "$port"; then
            die "$broker: port $port on 127.0.0.1 is taken by a process this script did not start; stop it or pick other ports (see the top of $0)"
        fi
    done
    port=$(port_of "$broker")
    mkdir -p "$data_dir" "$log_dir" "$run_dir"
    local log log_offset
    log=$(log_file "$broker")
    # Where this start's output begins, so a failure shows this start's lines only.
    log_offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
    started_ms=$(now_ms)
    launch "$broker"
    pid=$(<"$(pid_file "$broker")")
    local next_note_s=15
    until broker_ready "$broker"; do
        local waited_ms=$(($(now_ms) - started_ms))
        if ! process_alive "$pid" || ((waited_ms >= ready_timeout_s * 1000)); then
            if process_alive "$pid"; then
                printf 'error: %s: not ready on 127.0.0.1:%s after %s s; last log lines:\n' "$broker" "$port" "$ready_timeout_s" >&2
            else
                printf 'error: %s: exited during startup; last log lines:\n' "$broker" >&2
            fi
            tail -c "+$((log_offset + 1))" "$log" | tail -n 40 >&2
            # Signal the PID just spawned, not the PID file's: a launcher may have exec'd into
            # something whose command line the marker check would not recognise.
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$(pid_file "$broker")"
            exit 1
        fi
        if ((waited_ms >= next_note_s * 1000)); then
            say "$broker: starting, $next_note_s s so far"
            next_note_s=$((next_note_s + 15))
        fi
        sleep 0.2
    done
    say "$broker: started (pid $pid, 127.0.0.1:$port) in $(($(now_ms) - started_ms)) ms; log: $log"
}

# Stops the broker with SIGTERM (SIGKILL after a grace period), or at once with SIGKILL when
# given --kill.
stop_broker() {
    local broker=$1 mode=${2:-} pid grace_s
    if ! pid=$(running_pid "$broker"); then
        rm -f "$(pid_file "$broker")"
        say "$broker: not running"
        return 0
    fi
    local started_ms
    started_ms=$(now_ms)
    if [[ $mode = --kill ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        # Kafka's controlled shutdown and Pulsar's closing of its topics and bookie take a few
        # seconds; both flush what they hold.
        case $broker in
            pubsub | registry | oauth2) grace_s=10 ;;
            *) grace_s=60 ;;
        esac
        kill -TERM "$pid" 2>/dev/null || true
        # A paused broker (`pause`) acts on SIGTERM only once it runs again.
        kill -CONT "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + grace_s))
        while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if process_alive "$pid"; then
            warn "$broker (pid $pid) ignored SIGTERM for ${grace_s} s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    local deadline=$((SECONDS + 10))
    while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    process_alive "$pid" && die "$broker (pid $pid) is still alive after SIGKILL"
    rm -f "$(pid_file "$broker")"
    say "$broker: stopped (pid $pid${mode:+, $mode}) in $(($(now_ms) - started_ms)) ms"
}

# Resident memory (MiB) and thread count of a process, from /proc.
process_figures() {
    awk '/^VmRSS:/ { rss = int($2 / 1024) } /^Threads:/ { threads = $2 }
        END { printf "%d MiB, %d threads", rss, threads }' "/proc/$1/status" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Commands

print_env() {
    local prefix=${1:-} broker
    for broker in $selected_brokers; do
        case $broker in
            kafka)
                echo "${prefix}SLUICE_KAFKA_BROKERS=127.0.0.1:$kafka_port"
                echo "${prefix}SLUICE_KAFKA_SECURE_BROKERS=127.0.0.1:$kafka_secure_port"
                ;;
            pulsar)
                echo "${prefix}SLUICE_PULSAR_URL=pulsar://127.0.0.1:$pulsar_port"
                echo "${prefix}SLUICE_PULSAR_ADMIN_URL=http://127.0.0.1:$pulsar_http_port"
                echo "${prefix}SLUICE_PULSAR_TLS_URL=pulsar+ssl://127.0.0.1:$pulsar_tls_port"
                echo "${prefix}SLUICE_PULSAR_HTTPS_URL=https://127.0.0.1:$pulsar_https_port"
                ;;
            pubsub) echo "${prefix}PUBSUB_EMULATOR_HOST=127.0.0.1:$pubsub_port" ;;
            registry) echo "${prefix}SLUICE_REGISTRY_URL=$registry_url" ;;
            oauth2)
                echo "${prefix}SLUICE_OAUTH2_ISSUER_URL=$oauth2_issuer_url/"
                echo "${prefix}SLUICE_OAUTH2_ISSUED_TOKENS=$data_dir/oauth2/issued-tokens"
                ;;
        esac
    done
    # The secured listeners' certificates, SCRAM password and tokens (file names:
    # scripts/brokers/credentials.sh).
    echo "${prefix}SLUICE_CREDENTIALS_DIR=$credentials_dir"
}

cmd_toolchain() {
    ensure_packages
    ensure_rust_target
}

cmd_setup() {
    local started=$SECONDS broker
    cmd_toolchain
    for broker in $selected_brokers; do ensure_installed "$broker"; done
    say "everything installed for: $selected_brokers ($((SECONDS - started)) s)"
}

# Starts the selected brokers side by side (their start-ups are mostly waiting), and fails if
# any of them does not come up.
cmd_up() {
    cmd_setup
    local broker pids=() failed=0
    mkdir -p "$data_dir" "$log_dir" "$run_dir"
    # Before the brokers start side by side: both read the same files.
    ensure_credentials
    for broker in $selected_brokers; do
        start_broker "$broker" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    ((failed == 0)) || die "not every broker started (logs: $log_dir)"
    say "brokers are up; the tests read:"
    print_env
}

# Stops every broker with a PID file, whatever SLUICE_BROKERS says, so nothing is left behind.
cmd_down() {
    local broker
    for broker in oauth2 registry pubsub pulsar kafka; do stop_broker "$broker"; done
}

cmd_status() {
    local quiet=${1:-} all_running=0 broker pid
    for broker in $selected_brokers; do
        if pid=$(running_pid "$broker"); then
            [[ $quiet = --quiet ]] ||
                printf '%-8s running (pid %s, 127.0.0.1:%s): %s\n' "$broker" "$pid" "$(port_of "$broker")" "$(process_figures "$pid")"
        else
            all_running=1
            [[ $quiet = --quiet ]] || printf '%-8s stopped\n' "$broker"
        fi
    done
    return "$all_running"
}

cmd_start() {
    ensure_installed "$1"
    ensure_credentials
    start_broker "$1"
}

# SIGSTOP (pause) or SIGCONT (resume) to a running broker.
cmd_signal() {
    local command=$1 broker=$2 pid
    pid=$(running_pid "$broker") || die "$broker is not running"
    case $command in
        pause) kill -STOP "$pid" ;;
        resume) kill -CONT "$pid" ;;
    esac
    say "$broker: ${command}d (pid $pid)"
}

cmd_clean() {
    cmd_down
    say "deleting broker data and logs in $dev_dir"
    rm -rf "$data_dir" "$log_dir" "$run_dir"
    rmdir "$dev_dir" 2>/dev/null || true
}

usage() {
    sed -n '23,36p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# shellcheck disable=SC2086 # word splitting is the point: a space-separated list
check_broker_names $selected_brokers
command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status "${1:-}" ;;
    setup) cmd_setup ;;
    toolchain) cmd_toolchain ;;
    env) print_env "export " ;;
    clean) cmd_clean ;;
    start | stop | restart)
        [[ $# -ge 1 ]] || usage
        check_broker_names "$1"
        [[ -z ${2:-} || ($command != start && ${2:-} = --kill) ]] || usage
        case $command in
            start) cmd_start "$1" ;;
            stop) stop_broker "$1" "${2:-}" ;;
            restart) stop_broker "$1" "${2:-}" && cmd_start "$1" ;;
        esac
        ;;
    pause | resume)
        [[ $# -eq 1 ]] || usage
        check_broker_names "$1"
        cmd_signal "$command" "$1"
        ;;
    start-* | stop-* | restart-*) "$0" "${command%%-*}" "${command#*-}" "$@" ;;
    *) usage ;;
esac
