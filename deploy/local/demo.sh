#!/usr/bin/env bash
# README command (1): issue a certificate end to end on this machine.
#
#   deploy/local/demo.sh
#
# Installs what is missing, builds certfleet, starts Pebble and `certfleet dev`
# in ${CERTFLEET_DEMO_DIR:-./certfleet-demo}, creates the organization "demo"
# and a write token, requests a certificate for demo.certfleet.test and
# www.demo.certfleet.test, waits for it and lists certificates. Stops
# certfleet and Pebble on exit; the data directory is kept for a look until
# the next run, which starts afresh (each run has a new Pebble, whose earlier
# certificates and accounts no longer exist).
# CERTFLEET_DEMO_BIN=PATH uses that certfleet binary instead of building one.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

# Relative to where the command was typed.
demo_dir=${CERTFLEET_DEMO_DIR:-./certfleet-demo}
mkdir -p "$demo_dir"
demo_dir=$(cd "$demo_dir" && pwd)
cd "$root"
pebble_dir=$demo_dir/pebble
data_dir=$demo_dir/data

log() { echo "demo: $*" >&2; }

certfleet_pid=
cleanup() {
    local status=$?
    if [[ -n $certfleet_pid ]] && kill -0 "$certfleet_pid" 2>/dev/null; then
        kill "$certfleet_pid" 2>/dev/null || true
        wait "$certfleet_pid" 2>/dev/null || true
    fi
    bash "$root/deploy/local/pebble.sh" stop "$pebble_dir" || true
    if [[ $status -ne 0 ]]; then
        log "failed; logs are in $demo_dir (certfleet.log, pebble/pebble.log)"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash deploy/local/install-deps.sh

if [[ -n ${CERTFLEET_DEMO_BIN:-} ]]; then
    certfleet=$CERTFLEET_DEMO_BIN
else
    log "building certfleet"
    cargo build -q -p certfleet
    target_dir=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    certfleet=$target_dir/debug/certfleet
fi

rm -rf "$data_dir"
log "starting pebble"
bash deploy/local/pebble.sh start "$pebble_dir" >/dev/null
set -a
# shellcheck disable=SC1091
. "$pebble_dir/env"
set +a

grpc_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
log "starting certfleet dev on 127.0.0.1:$grpc_port"
"$certfleet" dev \
    --data-dir "$data_dir" \
    --grpc-listen "127.0.0.1:$grpc_port" \
    --http01-listen "127.0.0.1:$PEBBLE_HTTP01_PORT" \
    --http01-self-check-addr "127.0.0.1:$PEBBLE_HTTP01_PORT" \
    --ca-directory "$CERTFLEET_CA_DIRECTORY" \
    --ca-root "$CERTFLEET_CA_ROOT" \
    >"$demo_dir/certfleet.log" 2>&1 </dev/null &
certfleet_pid=$!

ready=false
for _ in $(seq 1 600); do
    if ! kill -0 "$certfleet_pid" 2>/dev/null; then
        break
    fi
    if [[ -s $data_dir/admin-token ]] && (exec 3<>"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null; then
        ready=true
        break
    fi
    sleep 0.1
done
if ! $ready; then
    log "certfleet did not come up; last lines of certfleet.log:"
    tail -n 30 "$demo_dir/certfleet.log" >&2 || true
    exit 1
fi

export CERTFLEET_ENDPOINT=http://127.0.0.1:$grpc_port

if ! output=$(CERTFLEET_TOKEN=$(cat "$data_dir/admin-token") \
    "$certfleet" org create demo --name "Demo" --email admin@demo.example.com 2>&1); then
    if ! grep -qi 'already exists' <<<"$output"; then
        echo "$output" >&2
        exit 1
    fi
    log "organization demo already exists"
else
    echo "$output"
fi

token_json=$(CERTFLEET_TOKEN=$(cat "$data_dir/admin-token") \
    "$certfleet" token create --org demo --role write --output json)
org_token=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$token_json")

log "requesting a certificate"
CERTFLEET_TOKEN=$org_token "$certfleet" cert request demo.certfleet.test www.demo.certfleet.test --wait
CERTFLEET_TOKEN=$org_token "$certfleet" cert list
log "done"
