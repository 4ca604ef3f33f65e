#!/usr/bin/env bash
# Starts or stops a throwaway Pebble ACME CA and pebble-challtestsrv on free
# loopback ports, with everything (certificates, config, pids, logs, env) kept
# in STATE_DIR.
#
#   deploy/local/pebble.sh start STATE_DIR [HTTP01_PORT]
#   deploy/local/pebble.sh stop STATE_DIR
#
# After `start`, STATE_DIR/env holds:
#   CERTFLEET_CA_DIRECTORY=https://127.0.0.1:PORT/dir
#   CERTFLEET_CA_ROOT=STATE_DIR/ca.pem        (CA of Pebble's HTTPS listener)
#   PEBBLE_MANAGEMENT=https://127.0.0.1:MPORT
#   PEBBLE_HTTP01_PORT=PORT                  (where Pebble connects for HTTP-01)
#   PEBBLE_TLSALPN01_PORT=PORT
#   PEBBLE_DNS=127.0.0.1:PORT                (pebble-challtestsrv DNS, Pebble's resolver)
#   CHALLTESTSRV_MANAGEMENT=http://127.0.0.1:PORT
# Pebble environment knobs (PEBBLE_WFE_NONCEREJECT, PEBBLE_AUTHZREUSE,
# PEBBLE_VA_ALWAYS_VALID, PEBBLE_CHAIN_LENGTH, ...) are passed through;
# PEBBLE_VA_NOSLEEP defaults to 1. PEBBLE_DNS_SERVER=IP:PORT makes Pebble
# resolve through that server instead of pebble-challtestsrv (DNS-01 against a
# local BIND, see deploy/local/bind.sh); PEBBLE_DNS then names it.
set -euo pipefail

usage() {
    echo "usage: $0 start STATE_DIR [HTTP01_PORT] | stop STATE_DIR" >&2
    exit 2
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# True while the process runs; a zombie (exited, not yet reaped by whoever
# adopted it) counts as stopped.
process_running() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
    [[ $state != Z ]]
}

pid_alive() {
    local file=$1
    [[ -s $file ]] && process_running "$(cat "$file")"
}

stop_pid() {
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if process_running "$pid"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            process_running "$pid" || break
            sleep 0.05
        done
        if process_running "$pid"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

directory_answers() {
    local state=$1
    [[ -s $state/env ]] || return 1
    local url
    url=$(sed -n 's/^CERTFLEET_CA_DIRECTORY=//p' "$state/env")
    curl -sf --max-time 2 --cacert "$state/ca.pem" "$url" >/dev/null 2>&1
}

make_certificates() {
    local state=$1
    # Regenerated on every start: cheap, and keeps a stale CA from lingering.
    openssl ecparam -name prime256v1 -genkey -noout -out "$state/ca-key.pem" 2>/dev/null
    openssl req -x509 -new -key "$state/ca-key.pem" -sha256 -days 3650 \
        -subj "/CN=certfleet local pebble listener CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$state/ca.pem" 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out "$state/listener-key.pem" 2>/dev/null
    openssl req -new -key "$state/listener-key.pem" -subj "/CN=localhost" \
        -out "$state/listener.csr" 2>/dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$state/listener.ext"
    openssl x509 -req -in "$state/listener.csr" -CA "$state/ca.pem" -CAkey "$state/ca-key.pem" \
        -CAcreateserial -sha256 -days 3650 -extfile "$state/listener.ext" \
        -out "$state/listener.pem" 2>/dev/null
    rm -f "$state/listener.csr" "$state/listener.ext" "$state/ca.srl"
}

start() {
    local state=$1 http01_port=${2:-}
    for bin in pebble pebble-challtestsrv curl openssl; do
        if ! command -v "$bin" >/dev/null 2>&1; then
            echo "pebble.sh: $bin not found; run deploy/local/install-deps.sh" >&2
            exit 1
        fi
    done
    mkdir -p "$state"
    state=$(cd "$state" && pwd)

    local running_http01
    running_http01=$(sed -n 's/^PEBBLE_HTTP01_PORT=//p' "$state/env" 2>/dev/null || true)
    if pid_alive "$state/pebble.pid" && pid_alive "$state/challtestsrv.pid" && directory_answers "$state" &&
        [[ -z $http01_port || $http01_port == 0 || $http01_port == "$running_http01" ]]; then
        echo "pebble.sh: already running, see $state/env" >&2
        cat "$state/env"
        return 0
    fi
    stop "$state"

    make_certificates "$state"

    local listen_port management_port tls_port dns_port challtestsrv_port
    listen_port=$(free_port)
    management_port=$(free_port)
    tls_port=$(free_port)
    dns_port=$(free_port)
    challtestsrv_port=$(free_port)
    [[ -n $http01_port && $http01_port != 0 ]] || http01_port=$(free_port)

    cat >"$state/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$listen_port",
    "managementListenAddress": "127.0.0.1:$management_port",
    "certificate": "$state/listener.pem",
    "privateKey": "$state/listener-key.pem",
    "httpPort": $http01_port,
    "tlsPort": $tls_port,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON

    nohup pebble-challtestsrv \
        -defaultIPv4 127.0.0.1 \
        -defaultIPv6 "" \
        -dns01 "127.0.0.1:$dns_port" \
        -http01 "" \
        -https01 "" \
        -tlsalpn01 "" \
        -management "127.0.0.1:$challtestsrv_port" \
        >"$state/challtestsrv.log" 2>&1 </dev/null &
    echo $! >"$state/challtestsrv.pid"

    (
        cd "$state"
        export PEBBLE_VA_NOSLEEP="${PEBBLE_VA_NOSLEEP:-1}"
        exec nohup pebble -config "$state/pebble-config.json" -dnsserver "${PEBBLE_DNS_SERVER:-127.0.0.1:$dns_port}" \
            >"$state/pebble.log" 2>&1 </dev/null
    ) &
    echo $! >"$state/pebble.pid"

    cat >"$state/env" <<ENV
CERTFLEET_CA_DIRECTORY=https://127.0.0.1:$listen_port/dir
CERTFLEET_CA_ROOT=$state/ca.pem
PEBBLE_MANAGEMENT=https://127.0.0.1:$management_port
PEBBLE_HTTP01_PORT=$http01_port
PEBBLE_TLSALPN01_PORT=$tls_port
PEBBLE_DNS=${PEBBLE_DNS_SERVER:-127.0.0.1:$dns_port}
CHALLTESTSRV_MANAGEMENT=http://127.0.0.1:$challtestsrv_port
ENV

    for _ in $(seq 1 200); do
        if directory_answers "$state"; then
            cat "$state/env"
            return 0
        fi
        if ! pid_alive "$state/pebble.pid" || ! pid_alive "$state/challtestsrv.pid"; then
            break
        fi
        sleep 0.1
    done
    echo "pebble.sh: pebble did not come up; last lines of its logs:" >&2
    tail -n 20 "$state/pebble.log" "$state/challtestsrv.log" >&2 || true
    stop "$state"
    exit 1
}

stop() {
    local state=$1
    [[ -d $state ]] || return 0
    stop_pid "$state/pebble.pid"
    stop_pid "$state/challtestsrv.pid"
}

[[ $# -ge 2 ]] || usage
case $1 in
start) [[ $# -le 3 ]] || usage; start "$2" "${3:-}" ;;
stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
*) usage ;;
esac
