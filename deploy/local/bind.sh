#!/usr/bin/env bash
# Starts or stops a throwaway BIND 9 for trying DNS-01 with the rfc2136
# provider: authoritative for the given zones (default example.test) on a free
# loopback port, taking TSIG-signed updates of TXT records; config, zones,
# journals, pid, log and env kept in STATE_DIR.
#
#   deploy/local/bind.sh start STATE_DIR [ZONE...]
#   deploy/local/bind.sh stop STATE_DIR
#
# After `start`, STATE_DIR/env holds:
#   BIND_SERVER=127.0.0.1:PORT          (UDP and TCP; the provider's `server`)
#   BIND_TSIG_KEY=certfleet-update      (may change TXT records in every zone)
#   BIND_TSIG_ALGORITHM=hmac-sha256
#   BIND_TSIG_SECRET=BASE64
#   BIND_ZONES="example.test ..."
# Check a record with: dig @127.0.0.1 -p PORT TXT _acme-challenge.example.test
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="start STATE_DIR [ZONE...] | stop STATE_DIR"

# Whether named answers the SOA of the first zone in STATE_DIR/env.
answers() {
    local state=$1 server zone
    [[ -s $state/env ]] || return 1
    pid_alive "$state/bind.pid" || return 1
    server=$(sed -n 's/^BIND_SERVER=//p' "$state/env")
    zone=$(sed -n 's/^BIND_ZONES="\([^ "]*\).*/\1/p' "$state/env")
    [[ -n $(dig +short +time=1 +tries=1 @127.0.0.1 -p "${server##*:}" SOA "$zone" 2>/dev/null) ]]
}

# Whether named logged that it cannot listen on its port (another process
# holds it).
port_taken() {
    grep -q -e 'address in use' -e 'interface ignored' -e 'unable to listen' "$1/named.log" 2>/dev/null
}

# Whether named has come up one way or the other: unable to listen, or
# answering.
settled() {
    port_taken "$1" || answers "$1"
}

write_config() {
    local state=$1 port=$2 secret=$3
    shift 3
    cat >"$state/named.conf" <<CONF
options {
    directory "$state";
    pid-file none;
    session-keyfile "$state/session.key";
    managed-keys-directory "$state";
    listen-on port $port { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion yes;
    allow-recursion { 127.0.0.1; };
    allow-transfer { 127.0.0.1; };
    dnssec-validation no;
    notify no;
};
controls { };
key "certfleet-update" { algorithm hmac-sha256; secret "$secret"; };
zone "." { type primary; file "root.zone"; };
CONF
    chmod 600 "$state/named.conf"
    # A local root: names outside the zones are NXDOMAIN at once.
    printf '%s\n' '$TTL 60' \
        '. IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 60' \
        '. IN NS a.root.test.' \
        'a.root.test. IN A 127.0.0.1' >"$state/root.zone"
    local zone
    for zone in "$@"; do
        printf '%s\n' '$TTL 60' \
            "$zone. IN SOA ns1.$zone. hostmaster.$zone. 1 3600 600 86400 60" \
            "$zone. IN NS ns1.$zone." \
            "ns1.$zone. IN A 127.0.0.1" >"$state/$zone.zone"
        echo "zone \"$zone\" { type primary; file \"$zone.zone\"; update-policy { grant certfleet-update zonesub TXT; }; };" >>"$state/named.conf"
    done
}

start() {
    local state=$1
    shift
    local zones=("$@")
    [[ ${#zones[@]} -gt 0 ]] || zones=(example.test)
    require_zone_names "${zones[@]}"
    require_commands named dig
    local named
    named=$(command -v named || echo /usr/sbin/named)
    mkdir -p "$state"
    state=$(cd "$state" && pwd)

    if answers "$state"; then
        already_running "$state"
        return 0
    fi
    stop "$state"
    rm -f "$state"/*.jnl

    # As root, named runs as nobody when nobody can reach STATE_DIR (it writes
    # journals there); otherwise as the caller.
    local run_as=()
    if [[ $(id -u) -eq 0 ]] && command -v setpriv >/dev/null 2>&1; then
        chown nobody:nogroup "$state"
        if setpriv --reuid=nobody --regid=nogroup --clear-groups -- test -w "$state"; then
            run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
        else
            chown root:root "$state"
        fi
    fi

    local port secret attempt
    secret=$(head -c 32 /dev/urandom | base64)
    # A port taken between free_port and named's bind: try another.
    for attempt in 1 2 3; do
        port=$(free_port)
        write_config "$state" "$port" "$secret" "${zones[@]}"
        [[ ${#run_as[@]} -eq 0 ]] || chown -R nobody:nogroup "$state"
        nohup "${run_as[@]}" "$named" -g -n 1 -c "$state/named.conf" >"$state/named.log" 2>&1 </dev/null &
        echo $! >"$state/bind.pid"

        cat >"$state/env" <<ENV
BIND_SERVER=127.0.0.1:$port
BIND_TSIG_KEY=certfleet-update
BIND_TSIG_ALGORITHM=hmac-sha256
BIND_TSIG_SECRET=$secret
BIND_ZONES="${zones[*]}"
ENV
        chmod 600 "$state/env"

        if wait_up 100 settled "$state" "$state/bind.pid" && ! port_taken "$state"; then
            cat "$state/env"
            echo "bind.sh: rfc2136 provider settings: server=127.0.0.1:$port tsig_key=certfleet-update tsig_secret=(BIND_TSIG_SECRET)" >&2
            return 0
        fi
        port_taken "$state" || break
        echo "bind.sh: port $port is taken (attempt $attempt)" >&2
        stop "$state"
    done
    echo "bind.sh: named did not come up; last lines of its log:" >&2
    tail -n 20 "$state/named.log" >&2 || true
    stop "$state"
    exit 1
}

stop() {
    local state=$1
    [[ -d $state ]] || return 0
    stop_pid "$state/bind.pid"
}

main "$@"
