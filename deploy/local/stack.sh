#!/usr/bin/env bash
# Starts or stops the whole distributed certfleet on this machine: N replicas
# of each role on the local PostgreSQL and RabbitMQ, against a local Pebble.
#
#   API=1 ISSUERS=3 SCHEDULERS=2 RESPONDERS=1 NOTIFIERS=1 deploy/local/stack.sh start STATE_DIR
#   deploy/local/stack.sh stop STATE_DIR
#
# `start` installs/starts PostgreSQL and RabbitMQ when absent (install-deps.sh),
# creates a database and a vhost named after STATE_DIR, starts Pebble
# (pebble.sh), builds the role binaries, and starts the processes in the
# background; logs (*.log), pid files (*.pid) and settings (stack.env) stay in
# STATE_DIR. It prints the gRPC endpoint(s) and the admin token.
# `stop` stops the processes (SIGTERM, then SIGKILL after 35 s) and Pebble,
# and drops the database and the vhost.
#
# PostgreSQL is reached as CERTFLEET_PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres); RabbitMQ with rabbitmqctl and
# the guest user. Only one responder can bind Pebble's HTTP-01 port: further
# responders listen on free ports (behind a load balancer in production).
#
# Opt-in, for scripts that start several stacks in a row on one Pebble
# (deploy/local/bench-bulk.sh):
#   STACK_PEBBLE_DIR=DIR  use the Pebble already running with state DIR
#                         (pebble.sh start DIR) instead of starting one;
#                         `stop` leaves it running
#   STACK_BIN_DIR=DIR     run the role binaries found in DIR (e.g. a release
#                         build) instead of building and running debug ones
# Relative paths are taken from the repository root.
set -euo pipefail

cd "$(dirname "$0")/../.."
PG_ADMIN_URL=${CERTFLEET_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

usage() {
    echo "usage: [API=1 ISSUERS=3 SCHEDULERS=2 RESPONDERS=1 NOTIFIERS=1] $0 start STATE_DIR | stop STATE_DIR" >&2
    exit 2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

rabbitmqctl_cmd() {
    if command -v rabbitmqctl >/dev/null 2>&1; then
        rabbitmqctl "$@"
    else
        /usr/sbin/rabbitmqctl "$@"
    fi
}

# certfleet_stack_<dir name>, lower-case, safe as a database and vhost name.
stack_name() {
    local base
    base=$(basename "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_\n' '_')
    echo "certfleet_stack_${base}"
}

# Starts one process in the background: NAME BINARY ARGS...
launch() {
    local state=$1 name=$2 binary=$3
    shift 3
    (
        set -a
        # shellcheck disable=SC1091
        source "$state/stack.env"
        set +a
        exec "$TARGET/$binary" "$@"
    ) >"$state/$name.log" 2>&1 </dev/null &
    echo $! >"$state/$name.pid"
}

wait_healthy() {
    local state=$1 name=$2 port=$3
    for _ in $(seq 1 600); do
        if curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
            echo "stack.sh: $name exited; see $state/$name.log:" >&2
            tail -n 20 "$state/$name.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "stack.sh: $name is not healthy after 60 s; see $state/$name.log" >&2
    return 1
}

start() {
    local state=$1
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    local name
    name=$(stack_name "$state")
    if compgen -G "$state/*.pid" >/dev/null; then
        echo "stack.sh: $state already holds a stack; run \`$0 stop $state\` first" >&2
        exit 1
    fi

    bash deploy/local/install-deps.sh
    if [[ -n ${STACK_BIN_DIR:-} ]]; then
        TARGET=$(cd "$STACK_BIN_DIR" && pwd)
        local binary
        for binary in certfleet-api certfleet-responder certfleet-issuer certfleet-scheduler certfleet-notifier certfleet-agent; do
            if [[ ! -x $TARGET/$binary ]]; then
                echo "stack.sh: no $binary in STACK_BIN_DIR=$STACK_BIN_DIR" >&2
                exit 1
            fi
        done
    else
        cargo build -p certfleet -p certfleet-api-bin -p certfleet-responder-bin \
            -p certfleet-issuer -p certfleet-scheduler -p certfleet-notifier -p certfleet-agent
        TARGET=$(cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug
    fi

    local pebble_env
    if [[ -n ${STACK_PEBBLE_DIR:-} ]]; then
        pebble_env=$STACK_PEBBLE_DIR/env
        if [[ ! -s $pebble_env ]]; then
            echo "stack.sh: no running Pebble in STACK_PEBBLE_DIR=$STACK_PEBBLE_DIR (no env file); start one with: bash deploy/local/pebble.sh start $STACK_PEBBLE_DIR" >&2
            exit 1
        fi
    else
        bash deploy/local/pebble.sh start "$state/pebble" >/dev/null
        pebble_env=$state/pebble/env
    fi
    local ca_directory ca_root http01_port
    ca_directory=$(sed -n 's/^CERTFLEET_CA_DIRECTORY=//p' "$pebble_env")
    ca_root=$(sed -n 's/^CERTFLEET_CA_ROOT=//p' "$pebble_env")
    http01_port=$(sed -n 's/^PEBBLE_HTTP01_PORT=//p' "$pebble_env")

    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"$name\"" >/dev/null
    rabbitmqctl_cmd add_vhost "$name" >/dev/null
    rabbitmqctl_cmd set_permissions -p "$name" guest '.*' '.*' '.*' >/dev/null

    local database_url=${PG_ADMIN_URL%/*}/$name
    (umask 077 && openssl rand -base64 32 >"$state/master.key")
    (umask 077 && cat >"$state/stack.env" <<ENV
CERTFLEET_DATABASE_URL=$database_url
CERTFLEET_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/$name
CERTFLEET_MASTER_KEY_FILE=$state/master.key
CERTFLEET_CA_DIRECTORY=$ca_directory
CERTFLEET_CA_ROOT=$ca_root
CERTFLEET_RATE_LIMIT=off
CERTFLEET_LOG=${CERTFLEET_LOG:-info}
ENV
    )
    echo "$name" >"$state/name"

    # Migrates the database and prints the first admin token.
    local admin_token
    admin_token=$(
        set -a
        # shellcheck disable=SC1091
        source "$state/stack.env"
        set +a
        "$TARGET/certfleet-api" --create-admin-token
    )
    (umask 077 && echo "$admin_token" >"$state/admin-token")

    local endpoints=() health=() index port
    for ((index = 0; index < ${API:-1}; index++)); do
        port=$(free_port)
        health+=("api-$index:$(free_port)")
        launch "$state" "api-$index" certfleet-api --grpc-listen "127.0.0.1:$port" \
            --health-listen "127.0.0.1:${health[-1]##*:}"
        endpoints+=("http://127.0.0.1:$port")
    done
    for ((index = 0; index < ${RESPONDERS:-1}; index++)); do
        port=$http01_port
        [[ $index -gt 0 ]] && port=$(free_port)
        health+=("responder-$index:$(free_port)")
        launch "$state" "responder-$index" certfleet-responder --http01-listen "127.0.0.1:$port" \
            --health-listen "127.0.0.1:${health[-1]##*:}"
    done
    for ((index = 0; index < ${ISSUERS:-3}; index++)); do
        health+=("issuer-$index:$(free_port)")
        launch "$state" "issuer-$index" certfleet-issuer \
            --http01-self-check-addr "127.0.0.1:$http01_port" \
            --health-listen "127.0.0.1:${health[-1]##*:}"
    done
    for ((index = 0; index < ${SCHEDULERS:-2}; index++)); do
        health+=("scheduler-$index:$(free_port)")
        launch "$state" "scheduler-$index" certfleet-scheduler --scheduler-interval 5 \
            --health-listen "127.0.0.1:${health[-1]##*:}"
    done
    for ((index = 0; index < ${NOTIFIERS:-1}; index++)); do
        health+=("notifier-$index:$(free_port)")
        launch "$state" "notifier-$index" certfleet-notifier \
            --health-listen "127.0.0.1:${health[-1]##*:}"
    done
    local entry
    for entry in "${health[@]}"; do
        wait_healthy "$state" "${entry%%:*}" "${entry##*:}"
    done

    echo "certfleet distributed stack running (state in $state)"
    for entry in "${endpoints[@]}"; do
        echo "  gRPC API:     $entry"
    done
    echo "  admin token:  $admin_token"
    echo "  database:     $database_url"
    echo "  vhost:        $name"
    echo "  try:          certfleet --endpoint ${endpoints[0]:-?} --token \$(cat $state/admin-token) org create …"
}

stop_process() {
    local file=$1 pid
    pid=$(cat "$file")
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 350); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop() {
    local state=$1
    [[ -d $state ]] || { echo "stack.sh: no $state" >&2; exit 1; }
    state=$(cd "$state" && pwd)
    local file
    # Stop every process at once (each drains for up to 30 s), then wait.
    for file in "$state"/*.pid; do
        [[ -e $file ]] || continue
        stop_process "$file" &
    done
    wait
    if [[ -d $state/pebble ]]; then
        bash deploy/local/pebble.sh stop "$state/pebble" >/dev/null || true
    fi
    if [[ -s $state/name ]]; then
        local name
        name=$(cat "$state/name")
        psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null || true
        rabbitmqctl_cmd delete_vhost "$name" >/dev/null 2>&1 || true
        rm -f "$state/name"
    fi
    echo "certfleet distributed stack stopped"
}

[[ $# -eq 2 ]] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
