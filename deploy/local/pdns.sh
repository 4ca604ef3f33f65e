#!/usr/bin/env bash
# Starts or stops a throwaway PowerDNS Authoritative (gsqlite3 backend, HTTP
# API on) for trying DNS-01 with the pdns provider: the given zones (default
# example.test) created through the API, DNS and API on free loopback ports;
# config, database, pid, log and env kept in STATE_DIR.
#
#   deploy/local/pdns.sh start STATE_DIR [ZONE...]
#   deploy/local/pdns.sh stop STATE_DIR
#
# After `start`, STATE_DIR/env holds:
#   PDNS_API_URL=http://127.0.0.1:PORT  (the provider's `api_url`)
#   PDNS_API_KEY=RANDOM                 (the provider's `api_key`)
#   PDNS_SERVER_ID=localhost
#   PDNS_DNS=127.0.0.1:PORT             (UDP and TCP)
#   PDNS_ZONES="example.test ..."
# Check a record with: dig @127.0.0.1 -p PORT TXT _acme-challenge.example.test
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql

USAGE="start STATE_DIR [ZONE...] | stop STATE_DIR"

# Calls the API: api STATE_DIR METHOD PATH [JSON]; prints the body and then
# the status on its own line.
api() {
    local state=$1 method=$2 path=$3 body=${4:-} url key
    url=$(sed -n 's/^PDNS_API_URL=//p' "$state/env")
    key=$(sed -n 's/^PDNS_API_KEY=//p' "$state/env")
    local args=(-sS --max-time 5 -X "$method" -H "X-API-Key: $key" --write-out '\n%{http_code}')
    [[ -z $body ]] || args+=(-H 'Content-Type: application/json' --data "$body")
    curl "${args[@]}" "$url$path"
}

api_answers() {
    local state=$1
    [[ -s $state/env ]] || return 1
    pid_alive "$state/pdns.pid" || return 1
    [[ $(api "$state" GET /api/v1/servers/localhost 2>/dev/null | tail -n 1) == 200 ]]
}

start() {
    local state=$1
    shift
    local zones=("$@")
    [[ ${#zones[@]} -gt 0 ]] || zones=(example.test)
    require_zone_names "${zones[@]}"
    require_commands pdns_server sqlite3 curl
    if [[ ! -f $SCHEMA ]]; then
        echo "pdns.sh: $SCHEMA missing; run deploy/local/install-deps.sh (pdns-backend-sqlite3)" >&2
        exit 1
    fi
    local pdns_server
    pdns_server=$(command -v pdns_server || echo /usr/sbin/pdns_server)
    mkdir -p "$state"
    state=$(cd "$state" && pwd)

    if api_answers "$state"; then
        already_running "$state"
        return 0
    fi
    stop "$state"

    rm -f "$state/pdns.sqlite3"
    sqlite3 "$state/pdns.sqlite3" ".read $SCHEMA"
    local dns_port api_port key
    dns_port=$(free_port)
    api_port=$(free_port)
    key=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    cat >"$state/pdns.conf" <<CONF
launch=gsqlite3
gsqlite3-database=$state/pdns.sqlite3
local-address=127.0.0.1:$dns_port
socket-dir=$state
api=yes
api-key=$key
webserver=yes
webserver-address=127.0.0.1
webserver-port=$api_port
webserver-allow-from=127.0.0.0/8
security-poll-suffix=
CONF
    chmod 600 "$state/pdns.conf"
    cat >"$state/env" <<ENV
PDNS_API_URL=http://127.0.0.1:$api_port
PDNS_API_KEY=$key
PDNS_SERVER_ID=localhost
PDNS_DNS=127.0.0.1:$dns_port
PDNS_ZONES="${zones[*]}"
ENV
    chmod 600 "$state/env"

    nohup "$pdns_server" --config-dir="$state" --daemon=no --guardian=no --disable-syslog --write-pid=no \
        >"$state/pdns.log" 2>&1 </dev/null &
    echo $! >"$state/pdns.pid"

    if ! wait_up 100 api_answers "$state" "$state/pdns.pid"; then
        echo "pdns.sh: pdns_server did not come up; last lines of its log:" >&2
        tail -n 20 "$state/pdns.log" >&2 || true
        stop "$state"
        exit 1
    fi

    local answer zone
    for zone in "${zones[@]}"; do
        answer=$(api "$state" POST /api/v1/servers/localhost/zones \
            "{\"name\":\"$zone.\",\"kind\":\"Native\",\"nameservers\":[\"ns1.$zone.\"],\"soa_edit_api\":\"DEFAULT\"}")
        if [[ $(tail -n 1 <<<"$answer") != 201 ]]; then
            echo "pdns.sh: creating zone $zone failed: $answer" >&2
            stop "$state"
            exit 1
        fi
    done
    cat "$state/env"
    echo "pdns.sh: pdns provider settings: api_url=http://127.0.0.1:$api_port api_key=(PDNS_API_KEY)" >&2
}

stop() {
    local state=$1
    [[ -d $state ]] || return 0
    stop_pid "$state/pdns.pid"
}

main "$@"
