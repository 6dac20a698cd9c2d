#!/usr/bin/env bash
# Installs, starts and stops the local brokers the integration tests use, on 127.0.0.1 only:
#   kafka         tansu (Kafka API, sqlite storage)                      SLUICE_KAFKA_PORT       9092
#   pulsar-lite   pulsar-lite (Pulsar protocol, RocksDB storage)         SLUICE_PULSAR_LITE_PORT 6651
#   pulsar-proxy  pulsar-compat-proxy in front of pulsar-lite            SLUICE_PULSAR_PORT      6650
#                 (the `pulsar` crate cannot consume from pulsar-lite directly; see
#                 tools/pulsar-compat-proxy/src/lib.rs)
#   pubsub        Google's Pub/Sub emulator (in memory)                  SLUICE_PUBSUB_PORT      8085
# Why these brokers and what they can't do: README.md, "Local brokers".
#
# Usage: scripts/brokers.sh up | down | status [--quiet] | setup | env | clean
#                           start <broker> | stop <broker> [--kill] | restart <broker> [--kill]
#        (also start-kafka, stop-pulsar, restart-pubsub, ...)
# <broker> is kafka, pulsar (= pulsar-lite + pulsar-proxy), pulsar-lite, pulsar-proxy or pubsub.
#
# SLUICE_BROKERS selects the brokers `up`, `setup`, `status` and `env` handle (default
# "kafka pulsar pubsub"); `down` stops everything it started. State (data, logs, PID files) lives in SLUICE_DEV_DIR (default
# <repo>/.sluice-dev); `down` keeps the data, `clean` deletes it. Only processes recorded in
# the PID files are ever signalled.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$repo_dir/scripts/env.sh"
dev_dir=${SLUICE_DEV_DIR:-$repo_dir/.sluice-dev}
data_dir=$dev_dir/data
log_dir=$dev_dir/logs
run_dir=$dev_dir/run

kafka_port=${SLUICE_KAFKA_PORT:-9092}
pulsar_lite_port=${SLUICE_PULSAR_LITE_PORT:-6651}
pulsar_port=${SLUICE_PULSAR_PORT:-6650}
pubsub_port=${SLUICE_PUBSUB_PORT:-8085}
selected_brokers=${SLUICE_BROKERS:-kafka pulsar pubsub}
ready_timeout_s=${SLUICE_READY_TIMEOUT:-60}
stop_timeout_s=10

pubsub_emulator=${SLUICE_PUBSUB_EMULATOR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}
# Client JIT only, serial GC and a heap cap: starts in seconds and stays small (BROKERS.md).
pubsub_java_opts="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx512m"

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

# ---------------------------------------------------------------------------------------------
# Installation

# Tools every build needs: protoc (the pulsar crate compiles Pulsar's .proto at build time) and
# the wasm32-wasip2 target (guest components).
ensure_toolchain() {
    if ! command -v protoc >/dev/null; then
        say "installing protoc (Debian package protobuf-compiler)"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler
    fi
    # Run from the repo so rustup applies rust-toolchain.toml's pinned toolchain.
    if ! (cd "$repo_dir" && rustup target list --installed | grep -qx wasm32-wasip2); then
        say "adding the wasm32-wasip2 Rust target"
        (cd "$repo_dir" && rustup target add wasm32-wasip2)
    fi
}

tansu_bin() {
    local cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin/tansu
    if command -v tansu >/dev/null; then
        command -v tansu
    elif [[ -x $cargo_bin ]]; then
        echo "$cargo_bin"
    else
        return 1
    fi
}

ensure_tansu() {
    tansu_bin >/dev/null && return 0
    local install_log=$log_dir/tansu-install.log
    say "installing tansu: cargo install tansu --locked --features dynostore,libsql"
    say "the first build takes 25-36 minutes on 2 cores; full log: $install_log"
    # Without these features tansu only has a "null" storage engine and refuses sqlite://.
    cargo install tansu --locked --features dynostore,libsql >"$install_log" 2>&1 &
    local install_pid=$! waited_s=0
    # A background job ignores ctrl-c: pass it on, so an interrupted `up` leaves no build behind.
    trap 'kill "$install_pid" 2>/dev/null; exit 130' INT TERM
    while kill -0 "$install_pid" 2>/dev/null; do
        sleep 1
        waited_s=$((waited_s + 1))
        if ((waited_s % 30 == 0)); then
            say "still building tansu after ${waited_s} s: $(grep -c '^ *Compiling ' "$install_log" || true) crates compiled"
        fi
    done
    trap - INT TERM
    if ! wait "$install_pid"; then
        tail -n 30 "$install_log" >&2
        die "cargo install tansu failed (log: $install_log)"
    fi
    tansu_bin >/dev/null || die "cargo install tansu finished but no tansu binary was found"
    say "tansu installed in ${waited_s} s"
}

pulsar_lite_bin() {
    python3 -c 'import os, pulsar_lite; print(os.path.join(os.path.dirname(pulsar_lite.__file__), "bin", "pulsar-lite"))' 2>/dev/null
}

ensure_pulsar_lite() {
    if ! python3 -c 'import pulsar_lite' 2>/dev/null; then
        say "installing pulsar-lite (pip install pulsar-lite)"
        python3 -m pip install --quiet pulsar-lite
    fi
    local bin
    bin=$(pulsar_lite_bin) || die "python3 cannot import pulsar_lite after installing it"
    [[ -x $bin ]] || die "the pulsar-lite package has no binary at $bin"
}

cargo_target_dir() {
    local dir=${CARGO_TARGET_DIR:-target}
    # cargo resolves a relative CARGO_TARGET_DIR against its working directory: the repo here.
    [[ $dir = /* ]] || dir=$repo_dir/$dir
    echo "$dir"
}

proxy_bin() { echo "$(cargo_target_dir)/debug/pulsar-compat-proxy"; }

build_proxy() {
    say "building pulsar-compat-proxy (cargo build -p pulsar-compat-proxy)"
    (cd "$repo_dir" && cargo build -p pulsar-compat-proxy)
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
    sudo apt-get update && sudo apt-get install google-cloud-cli-pubsub-emulator default-jre-headless
Or leave Pub/Sub out: SLUICE_BROKERS="kafka pulsar" $0 up
EOF
        exit 1
    fi
    command -v java >/dev/null ||
        die "the Pub/Sub emulator needs Java: apt-get install default-jre-headless (or leave it out with SLUICE_BROKERS=\"kafka pulsar\")"
}

# Installs what the selected brokers need. Building the proxy is skipped when `rebuild_proxy` is
# "no" and a binary exists (so a quick `start` does not wait for cargo's build lock).
ensure_installed() {
    local broker=$1 rebuild_proxy=${2:-yes}
    case $broker in
        kafka) ensure_tansu ;;
        pulsar-lite) ensure_pulsar_lite ;;
        pulsar-proxy)
            if [[ $rebuild_proxy = yes || ! -x $(proxy_bin) ]]; then build_proxy; fi
            ;;
        pubsub) ensure_pubsub_emulator ;;
        *) die "unknown broker: $broker" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Processes

# Fails unless every argument names a broker or one of its processes.
check_broker_names() {
    local name
    for name in "$@"; do
        case $name in
            kafka | pulsar | pulsar-lite | pulsar-proxy | pubsub) ;;
            *) die "unknown broker: $name (expected kafka, pulsar, pulsar-lite, pulsar-proxy or pubsub)" ;;
        esac
    done
}

# The processes behind a broker name, in start order.
services_of() {
    case $1 in
        kafka | pulsar-lite | pulsar-proxy | pubsub) echo "$1" ;;
        pulsar) echo "pulsar-lite pulsar-proxy" ;;
    esac
}

selected_services() {
    local broker
    for broker in $selected_brokers; do services_of "$broker"; done | tr ' ' '\n'
}

port_of() {
    case $1 in
        kafka) echo "$kafka_port" ;;
        pulsar-lite) echo "$pulsar_lite_port" ;;
        pulsar-proxy) echo "$pulsar_port" ;;
        pubsub) echo "$pubsub_port" ;;
    esac
}

# A word that the command line of the service's process contains; guards against signalling an
# unrelated process that reused a stale PID.
cmdline_marker() {
    case $1 in
        kafka) echo tansu ;;
        pulsar-lite) echo pulsar-lite ;;
        pulsar-proxy) echo pulsar-compat-proxy ;;
        pubsub) echo pubsub-emulator ;;
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

# Prints the PID of the running service; fails (and drops a stale PID file) when it is not running.
running_pid() {
    local service=$1 file pid
    file=$(pid_file "$service")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && process_alive "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(cmdline_marker "$service")"; then
        echo "$pid"
    else
        rm -f "$file"
        return 1
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

service_ready() {
    case $1 in
        pubsub) curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$pubsub_port/" ;;
        *) port_open "$(port_of "$1")" ;;
    esac
}

# Starts `command...` in the background in `workdir`, logging to the service's log file, and
# records its PID. `exec` keeps the PID: it is the broker's own, not a wrapper's.
spawn() {
    local service=$1 workdir=$2
    shift 2
    local log
    log=$(log_file "$service")
    printf '\n=== %s: starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
    (cd "$workdir" && exec nohup "$@" >>"$log" 2>&1 </dev/null) &
    echo $! >"$(pid_file "$service")"
}

launch() {
    local service=$1 port
    port=$(port_of "$service")
    local workdir=$data_dir/$service
    mkdir -p "$workdir"
    case $service in
        kafka)
            # tansu resolves the sqlite path against its working directory (even sqlite:///abs).
            spawn kafka "$workdir" "$(tansu_bin)" broker \
                --listener-url "tcp://127.0.0.1:$port" \
                --advertised-listener-url "tcp://127.0.0.1:$port" \
                --storage-engine sqlite://tansu.db
            ;;
        pulsar-lite)
            # Metrics would otherwise listen on 0.0.0.0:8080.
            printf '[metrics]\nenabled = false\n' >"$workdir/pulsar-lite.toml"
            spawn pulsar-lite "$workdir" "$(pulsar_lite_bin)" \
                --config "$workdir/pulsar-lite.toml" --addr "127.0.0.1:$port" \
                --db-path "$workdir/rocksdb" --log-level warn
            ;;
        pulsar-proxy)
            spawn pulsar-proxy "$workdir" "$(proxy_bin)" \
                --listen "127.0.0.1:$port" --upstream "127.0.0.1:$pulsar_lite_port"
            ;;
        pubsub)
            # The emulator's launcher script execs java, so the recorded PID is java's.
            spawn pubsub "$workdir" env JAVA_OPTS="$pubsub_java_opts" "$pubsub_emulator" \
                --host=127.0.0.1 --port="$port"
            ;;
    esac
}

start_service() {
    local service=$1 pid port started_ms
    port=$(port_of "$service")
    if pid=$(running_pid "$service"); then
        say "$service: already running (pid $pid, 127.0.0.1:$port)"
        return 0
    fi
    # A broker killed a moment ago may still be letting go of its port.
    local tries=50
    while port_open "$port" && ((tries-- > 0)); do sleep 0.1; done
    if port_open "$port"; then
        die "$service: port $port on 127.0.0.1 is taken by a process this script did not start; stop it or pick another port (see the top of $0)"
    fi
    mkdir -p "$data_dir" "$log_dir" "$run_dir"
    local log log_offset
    log=$(log_file "$service")
    # Where this start's output begins, so a failure shows this start's lines only.
    log_offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
    started_ms=$(now_ms)
    launch "$service"
    pid=$(<"$(pid_file "$service")")
    until service_ready "$service"; do
        if ! process_alive "$pid" || (($(now_ms) - started_ms >= ready_timeout_s * 1000)); then
            if process_alive "$pid"; then
                printf 'error: %s: not ready on 127.0.0.1:%s after %s s; last log lines:\n' "$service" "$port" "$ready_timeout_s" >&2
            else
                printf 'error: %s: exited during startup; last log lines:\n' "$service" >&2
            fi
            tail -c "+$((log_offset + 1))" "$log" | tail -n 30 >&2
            [[ $service = kafka ]] &&
                printf 'hint: tansu needs its sqlite engine: cargo install tansu --locked --features dynostore,libsql --force\n' >&2
            # Signal the PID just spawned, not the PID file's: a launcher may have exec'd into
            # something whose command line the marker check would not recognise.
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$(pid_file "$service")"
            exit 1
        fi
        sleep 0.1
    done
    [[ $service = kafka ]] && index_tansu_headers
    say "$service: started (pid $pid, 127.0.0.1:$port) in $(($(now_ms) - started_ms)) ms; log: $log"
}

# tansu 0.6.0's sqlite schema has no index on header (topition, offset_id), and its fetch
# looks up the headers of each record one by one: every fetched record scans every header in
# the database. Measured: 10,000 records with 4 headers each read back in 0.7 s with this
# index, and not within 120 s without it (the serial storage actor then starves metadata and
# produce requests too). tansu creates its tables when it starts, so add the index right after.
index_tansu_headers() {
    python3 - "$data_dir/kafka/tansu.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("create index if not exists sluice_header_record on header (topition, offset_id)")
db.commit()
PY
}

# Stops the service with SIGTERM (SIGKILL after $stop_timeout_s s), or at once with SIGKILL
# when given --kill.
stop_service() {
    local service=$1 mode=${2:-} pid
    if ! pid=$(running_pid "$service"); then
        rm -f "$(pid_file "$service")"
        say "$service: not running"
        return 0
    fi
    if [[ $mode = --kill ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + stop_timeout_s))
        while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if process_alive "$pid"; then
            warn "$service (pid $pid) ignored SIGTERM for ${stop_timeout_s} s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    local deadline=$((SECONDS + 5))
    while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    process_alive "$pid" && die "$service (pid $pid) is still alive after SIGKILL"
    rm -f "$(pid_file "$service")"
    say "$service: stopped (pid $pid${mode:+, $mode})"
}

# ---------------------------------------------------------------------------------------------
# Commands

print_env() {
    local prefix=${1:-}
    local broker
    for broker in $selected_brokers; do
        case $broker in
            kafka) echo "${prefix}SLUICE_KAFKA_BROKERS=127.0.0.1:$kafka_port" ;;
            pulsar)
                echo "${prefix}SLUICE_PULSAR_URL=pulsar://127.0.0.1:$pulsar_port"
                echo "${prefix}SLUICE_PULSAR_LITE_ADDR=127.0.0.1:$pulsar_lite_port"
                ;;
            pubsub) echo "${prefix}PUBSUB_EMULATOR_HOST=127.0.0.1:$pubsub_port" ;;
        esac
    done
}

cmd_setup() {
    ensure_toolchain
    local service
    for service in $(selected_services); do ensure_installed "$service"; done
    say "everything installed for: $selected_brokers"
}

cmd_up() {
    cmd_setup
    local service
    for service in $(selected_services); do start_service "$service"; done
    say "brokers are up; the tests read:"
    print_env
}

# Stops every service with a PID file, whatever SLUICE_BROKERS says, so nothing is left behind.
cmd_down() {
    local service
    # The proxy before the broker behind it.
    for service in pubsub pulsar-proxy pulsar-lite kafka; do stop_service "$service"; done
}

cmd_status() {
    local quiet=${1:-} all_running=0 service pid
    for service in $(selected_services); do
        if pid=$(running_pid "$service"); then
            [[ $quiet = --quiet ]] || printf '%-13s running (pid %s, 127.0.0.1:%s)\n' "$service" "$pid" "$(port_of "$service")"
        else
            all_running=1
            [[ $quiet = --quiet ]] || printf '%-13s stopped\n' "$service"
        fi
    done
    return "$all_running"
}

cmd_start() {
    local service
    for service in $(services_of "$1"); do
        ensure_installed "$service" no
        start_service "$service"
    done
}

cmd_stop() {
    local service
    for service in $(services_of "$1" | tr ' ' '\n' | tac); do stop_service "$service" "${2:-}"; done
}

cmd_clean() {
    cmd_down
    say "deleting broker data and logs in $dev_dir"
    rm -rf "$data_dir" "$log_dir" "$run_dir"
    rmdir "$dev_dir" 2>/dev/null || true
}

usage() {
    sed -n '11,15p' "$0" | sed 's/^# \{0,1\}//' >&2
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
    env) print_env "export " ;;
    clean) cmd_clean ;;
    start | stop | restart)
        [[ $# -ge 1 ]] || usage
        check_broker_names "$1"
        [[ -z ${2:-} || ( $command != start && ${2:-} = --kill ) ]] || usage
        case $command in
            start) cmd_start "$1" ;;
            stop) cmd_stop "$1" "${2:-}" ;;
            restart) cmd_stop "$1" "${2:-}" && cmd_start "$1" ;;
        esac
        ;;
    start-* | stop-* | restart-*) "$0" "${command%%-*}" "${command#*-}" "$@" ;;
    *) usage ;;
esac
