#!/usr/bin/env bash
# Benchmark: request→valid time of one wildcard + apex certificate
# (`*.NAME` + `NAME`) over DNS-01 through RFC 2136, for certfleet beside
# certbot (python3-certbot-dns-rfc2136) and lego, all writing to the same local
# BIND that the same Pebble resolves through, one tool after the other.
#
#   bash deploy/local/bench-dns.sh
#
# Environment:
#   BENCH_N=10                              timed certificates per tool (after one warm-up each)
#   BENCH_TOOLS="certfleet certbot lego"    which tools, in this order
#   BENCH_OUT=target/bench-dns              where results.md and runs.tsv go
#   BENCH_CERTFLEET_BIN=PATH                use this certfleet binary instead of building one
#   BENCH_KEEP=1                            keep the scratch directory (logs, certificates)
#
# The others are told to skip what would only add fixed waits against a server
# that applies updates at once: certbot `--dns-rfc2136-propagation-seconds 0`
# (its only propagation handling is that fixed sleep), lego `--dns.disable-cp`
# (no propagation check) with `RFC2136_SEQUENCE_INTERVAL=0` and
# `--dns.resolvers` pointing at BIND. certfleet runs its full propagation check
# (every authoritative server must answer the value) with default settings.
# Wall-clock seconds around the client command, process start included.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

n=${BENCH_N:-10}
tools=${BENCH_TOOLS:-certfleet certbot lego}
out=${BENCH_OUT:-$root/target/bench-dns}
run_timeout=300

log() { echo "bench-dns: $*" >&2; }
die() {
    log "$*"
    exit 1
}

[[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive integer, not '$n'"
for tool in $tools; do
    case $tool in
    certfleet | certbot | lego) ;;
    *) die "unknown tool '$tool' in BENCH_TOOLS (certfleet, certbot, lego)" ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/certfleet-bench-dns.XXXXXX")
pebble_dir=$work/pebble
bind_dir=$work/bind
certfleet_pid=
keep=${BENCH_KEEP:-0}

cleanup() {
    local status=$?
    if [[ -n $certfleet_pid ]] && kill -0 "$certfleet_pid" 2>/dev/null; then
        kill "$certfleet_pid" 2>/dev/null || true
        wait "$certfleet_pid" 2>/dev/null || true
    fi
    bash "$root/deploy/local/pebble.sh" stop "$pebble_dir" >/dev/null 2>&1 || true
    bash "$root/deploy/local/bind.sh" stop "$bind_dir" >/dev/null 2>&1 || true
    if [[ $status -ne 0 ]]; then
        keep=1
        log "failed; logs are in $work"
    fi
    if [[ $keep == 1 ]]; then
        log "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$runs"; }

# Runs "$@" with a time limit; sets wall (s). Returns the command's status.
timed() {
    local start end status=0
    start=$(now)
    timeout "$run_timeout" "$@" || status=$?
    end=$(now)
    wall=$(elapsed "$start" "$end")
    return "$status"
}

# --- set-up -------------------------------------------------------------------

log "installing what is missing"
bash deploy/local/install-deps.sh --bench

certfleet=
if [[ " $tools " == *" certfleet "* ]]; then
    if [[ -n ${BENCH_CERTFLEET_BIN:-} ]]; then
        certfleet=$BENCH_CERTFLEET_BIN
    else
        log "building certfleet (release)"
        cargo build -q --release -p certfleet
        target_dir=$(cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
        certfleet=$target_dir/release/certfleet
    fi
    [[ -x $certfleet ]] || die "no certfleet binary at $certfleet"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
runs=$out/runs.tsv
printf 'tool\trun\tok\twall_s\n' >"$runs"

log "starting BIND (zone bench.test)"
bash deploy/local/bind.sh start "$bind_dir" bench.test >/dev/null
set -a
# shellcheck disable=SC1091
. "$bind_dir/env"
set +a
printf '%s' "$BIND_TSIG_SECRET" >"$work/tsig.secret"
chmod 600 "$work/tsig.secret"

log "starting pebble (resolving through BIND at $BIND_SERVER)"
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 PEBBLE_DNS_SERVER=$BIND_SERVER \
    bash deploy/local/pebble.sh start "$pebble_dir" "$(free_port)" >/dev/null
set -a
# shellcheck disable=SC1091
. "$pebble_dir/env"
set +a

# Leftover challenge records after a tool's runs (there must be none).
leftovers() {
    dig +nocmd +nostats +nocomments +onesoa @"${BIND_SERVER%:*}" -p "${BIND_SERVER##*:}" AXFR bench.test |
        awk '$1 ~ /^_acme-challenge\./ && $4 == "TXT"' | wc -l
}

notes=$work/notes
: >"$notes"

# --- certfleet ------------------------------------------------------------------

bench_certfleet() {
    local data_dir=$work/certfleet-data grpc_port log_file=$work/certfleet.log
    grpc_port=$(free_port)
    log "certfleet: starting certfleet dev on 127.0.0.1:$grpc_port"
    CERTFLEET_DNS_RESOLVER=$BIND_SERVER "$certfleet" dev \
        --data-dir "$data_dir" \
        --grpc-listen "127.0.0.1:$grpc_port" \
        --http01-listen "127.0.0.1:$(free_port)" \
        --ca-directory "$CERTFLEET_CA_DIRECTORY" \
        --ca-root "$CERTFLEET_CA_ROOT" \
        >"$log_file" 2>&1 </dev/null &
    certfleet_pid=$!
    local ready=false
    for _ in $(seq 1 600); do
        kill -0 "$certfleet_pid" 2>/dev/null || break
        if [[ -s $data_dir/admin-token ]] && port_in_use "$grpc_port"; then
            ready=true
            break
        fi
        sleep 0.1
    done
    if ! $ready; then
        tail -n 30 "$log_file" >&2 || true
        die "certfleet did not come up"
    fi
    export CERTFLEET_ENDPOINT=http://127.0.0.1:$grpc_port
    local admin_token org_token token_json cli_log=$work/certfleet-cli.log
    admin_token=$(cat "$data_dir/admin-token")
    CERTFLEET_TOKEN=$admin_token "$certfleet" org create bench --name "Bench" \
        --email bench@example.com >>"$cli_log" 2>&1 || die "certfleet org create failed; see $cli_log"
    token_json=$(CERTFLEET_TOKEN=$admin_token "$certfleet" token create --org bench \
        --role write --output json)
    org_token=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$token_json")
    # The zone's NS record points at port 53, where nothing listens here: the
    # propagation check asks BIND's own address instead.
    CERTFLEET_TOKEN=$org_token "$certfleet" dns add bind --kind rfc2136 \
        --set "server=$BIND_SERVER" --set "tsig_key=$BIND_TSIG_KEY" \
        --set-file "tsig_secret=$work/tsig.secret" --set "nameservers=$BIND_SERVER" \
        >>"$cli_log" 2>&1 || die "certfleet dns add failed; see $cli_log"

    log "certfleet: warm-up"
    CERTFLEET_TOKEN=$org_token timeout "$run_timeout" "$certfleet" cert request \
        '*.warmup-certfleet.bench.test' warmup-certfleet.bench.test \
        --challenge dns-01 --dns bind --wait >>"$cli_log" 2>&1 ||
        die "certfleet warm-up certificate failed; see $cli_log"
    local i wall
    for i in $(seq 1 "$n"); do
        if timed env CERTFLEET_TOKEN="$org_token" "$certfleet" cert request \
            "*.certfleet-$i.bench.test" "certfleet-$i.bench.test" \
            --challenge dns-01 --dns bind --wait >>"$cli_log" 2>&1; then
            record certfleet "$i" 1 "$wall"
        else
            log "certfleet: run $i failed"
            record certfleet "$i" 0 "$wall"
        fi
    done
    printf 'certfleet_leftovers\t%s\n' "$(leftovers)" >>"$notes"
    kill "$certfleet_pid" 2>/dev/null || true
    wait "$certfleet_pid" 2>/dev/null || true
    certfleet_pid=
    unset CERTFLEET_ENDPOINT
}

# --- certbot ----------------------------------------------------------------------

bench_certbot() {
    local credentials=$work/certbot-rfc2136.ini i wall argv
    cat >"$credentials" <<INI
dns_rfc2136_server = ${BIND_SERVER%:*}
dns_rfc2136_port = ${BIND_SERVER##*:}
dns_rfc2136_name = $BIND_TSIG_KEY
dns_rfc2136_secret = $BIND_TSIG_SECRET
dns_rfc2136_algorithm = HMAC-SHA256
INI
    chmod 600 "$credentials"
    certbot_command() {
        argv=(env REQUESTS_CA_BUNDLE="$CERTFLEET_CA_ROOT" certbot certonly
            --dns-rfc2136 --dns-rfc2136-credentials "$credentials"
            --dns-rfc2136-propagation-seconds 0
            --server "$CERTFLEET_CA_DIRECTORY"
            --non-interactive --agree-tos -m bench@example.com --no-eff-email
            --config-dir "$work/certbot/config" --work-dir "$work/certbot/work"
            --logs-dir "$work/certbot/logs"
            -d "*.$1" -d "$1")
    }
    log "certbot: warm-up (registers the account)"
    certbot_command warmup-certbot.bench.test
    timeout "$run_timeout" "${argv[@]}" >>"$work/certbot.log" 2>&1 ||
        die "certbot warm-up failed; see $work/certbot.log"
    for i in $(seq 1 "$n"); do
        certbot_command "certbot-$i.bench.test"
        if timed "${argv[@]}" >>"$work/certbot.log" 2>&1; then
            record certbot "$i" 1 "$wall"
        else
            log "certbot: run $i failed"
            record certbot "$i" 0 "$wall"
        fi
    done
    printf 'certbot_leftovers\t%s\n' "$(leftovers)" >>"$notes"
}

# --- lego ---------------------------------------------------------------------------

bench_lego() {
    local i wall argv
    lego_command() {
        argv=(env LEGO_CA_CERTIFICATES="$CERTFLEET_CA_ROOT"
            RFC2136_NAMESERVER="$BIND_SERVER" RFC2136_TSIG_KEY="$BIND_TSIG_KEY"
            RFC2136_TSIG_SECRET="$BIND_TSIG_SECRET" RFC2136_TSIG_ALGORITHM=hmac-sha256.
            RFC2136_SEQUENCE_INTERVAL=0 RFC2136_PROPAGATION_TIMEOUT=60 RFC2136_POLLING_INTERVAL=1
            lego --server "$CERTFLEET_CA_DIRECTORY"
            --email bench@example.com --accept-tos
            --dns rfc2136 --dns.resolvers "$BIND_SERVER" --dns.disable-cp
            --domains "*.$1" --domains "$1" --path "$work/lego" run)
    }
    log "lego: warm-up (registers the account)"
    lego_command warmup-lego.bench.test
    timeout "$run_timeout" "${argv[@]}" >>"$work/lego.log" 2>&1 ||
        die "lego warm-up failed; see $work/lego.log"
    for i in $(seq 1 "$n"); do
        lego_command "lego-$i.bench.test"
        if timed "${argv[@]}" >>"$work/lego.log" 2>&1; then
            record lego "$i" 1 "$wall"
        else
            log "lego: run $i failed"
            record lego "$i" 0 "$wall"
        fi
    done
    printf 'lego_leftovers\t%s\n' "$(leftovers)" >>"$notes"
}

for tool in $tools; do
    log "$tool: $n certificates"
    "bench_$tool"
done

# --- report -----------------------------------------------------------------------------

machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
versions="pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?'), bind9 $(dpkg-query -W -f='${Version}' bind9 2>/dev/null || echo '?'), certbot $(dpkg-query -W -f='${Version}' certbot 2>/dev/null || echo '?'), lego $(dpkg-query -W -f='${Version}' lego 2>/dev/null || echo '?')"

python3 - "$runs" "$notes" "$n" "$machine" "$versions" "$tools" >"$out/results.md" <<'PY'
import csv
import math
import statistics
import sys
from datetime import datetime, timezone

runs_path, notes_path, n, machine, versions, tools = sys.argv[1:7]
notes = dict(line.rstrip("\n").split("\t") for line in open(notes_path) if line.strip())
rows = list(csv.DictReader(open(runs_path), delimiter="\t"))


def p90(values):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


stats = {}
for tool in tools.split():
    mine = [row for row in rows if row["tool"] == tool]
    walls = [float(row["wall_s"]) for row in mine if row["ok"] == "1"]
    stats[tool] = dict(runs=len(mine), failed=len(mine) - len(walls), walls=walls)
base = stats.get("certfleet")
base_median = statistics.median(base["walls"]) if base and base["walls"] else None

print(f"Request→valid, one wildcard + apex certificate over DNS-01 (RFC 2136 to BIND, Pebble resolving through it),")
print(f"{n} timed runs per tool after one warm-up, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
print(f"Machine: {machine}. Versions: {versions}.")
print()
print("| tool | runs | failed | median s | p90 s | min s | max s | median vs certfleet | `_acme-challenge` records left |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for tool, s in stats.items():
    walls = s["walls"]
    if walls:
        median = statistics.median(walls)
        cells = [f"{median:.3f}", f"{p90(walls):.3f}", f"{min(walls):.3f}", f"{max(walls):.3f}"]
        ratio = f"{median / base_median:.1f}×" if base_median else "n/a"
    else:
        cells = ["—"] * 4
        ratio = "n/a"
    print(f"| {tool} | {s['runs']} | {s['failed']} | " + " | ".join(cells)
          + f" | {ratio} | {notes.get(tool + '_leftovers', '?')} |")
PY

cat "$out/results.md"
log "results in $out/results.md, per-run data in $runs"
