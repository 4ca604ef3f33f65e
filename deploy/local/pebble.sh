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

# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="start STATE_DIR [HTTP01_PORT] | stop STATE_DIR"

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
    [[ $# -le 2 ]] || usage
    local state=$1 http01_port=${2:-}
    require_commands pebble pebble-challtestsrv curl openssl
    mkdir -p "$state"
    state=$(cd "$state" && pwd)

    local running_http01
    running_http01=$(sed -n 's/^PEBBLE_HTTP01_PORT=//p' "$state/env" 2>/dev/null || true)
    if pid_alive "$state/pebble.pid" && pid_alive "$state/challtestsrv.pid" && directory_answers "$state" &&
        [[ -z $http01_port || $http01_port == 0 || $http01_port == "$running_http01" ]]; then
        already_running "$state"
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
CERTFLEET_RATE_LIMIT=off
PEBBLE_MANAGEMENT=https://127.0.0.1:$management_port
PEBBLE_HTTP01_PORT=$http01_port
PEBBLE_TLSALPN01_PORT=$tls_port
PEBBLE_DNS=${PEBBLE_DNS_SERVER:-127.0.0.1:$dns_port}
CHALLTESTSRV_MANAGEMENT=http://127.0.0.1:$challtestsrv_port
ENV

    if wait_up 200 directory_answers "$state" "$state/pebble.pid" "$state/challtestsrv.pid"; then
        cat "$state/env"
        return 0
    fi
    echo "pebble.sh: pebble did not come up; last lines of its logs:" >&2
    tail -n 20 "$state/pebble.log" "$state/challtestsrv.log" >&2 || true
    stop "$state"
    exit 1
}

stop() {
    local state=$1
    [[ -d $state ]] || return 0
    stop_pid "$state/pebble.pid" 0.05
    stop_pid "$state/challtestsrv.pid" 0.05
}

main "$@"
