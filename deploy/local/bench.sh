#!/usr/bin/env bash
# Benchmark: request→valid time of one HTTP-01 certificate on Pebble, for
# certfleet beside certbot and lego (Debian packages), on the same Pebble, in
# the same run, one tool after the other (DESIGN.md §11).
#
#   bash deploy/local/bench.sh
#
# Environment:
#   BENCH_N=20                         timed certificates per tool (after one warm-up each)
#   BENCH_TOOLS="certfleet certbot lego"   which tools, in this order
#   BENCH_HTTP01_PORT=5002             the port Pebble validates HTTP-01 on
#   BENCH_OUT=target/bench             where results.md and runs.tsv go
#   BENCH_CERTFLEET_BIN=PATH           use this certfleet binary instead of building one
#   BENCH_KEEP=1                       keep the scratch directory (logs, certificates)
#
# Per certificate: wall-clock seconds around the client command (process start
# included). CPU: certbot and lego, user+system of their process and its
# children; certfleet, the `certfleet dev` process's utime+stime over the timed
# runs (/proc/PID/stat) divided by N, plus the CLI's own user+system. Peak RSS
# (/usr/bin/time %M): the largest client process (certbot, lego), or the
# `certfleet dev` process (VmHWM). Each tool gets one untimed warm-up
# certificate first (it registers the ACME account).
# Prints a Markdown table and writes it to $BENCH_OUT/results.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

n=${BENCH_N:-20}
tools=${BENCH_TOOLS:-certfleet certbot lego}
http01_port=${BENCH_HTTP01_PORT:-5002}
out=${BENCH_OUT:-$root/target/bench}
run_timeout=180

log() { echo "bench: $*" >&2; }
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

work=$(mktemp -d "${TMPDIR:-/tmp}/certfleet-bench.XXXXXX")
pebble_dir=$work/pebble
certfleet_pid=
keep=${BENCH_KEEP:-0}

cleanup() {
    local status=$?
    if [[ -n $certfleet_pid ]] && kill -0 "$certfleet_pid" 2>/dev/null; then
        kill "$certfleet_pid" 2>/dev/null || true
        wait "$certfleet_pid" 2>/dev/null || true
    fi
    bash "$root/deploy/local/pebble.sh" stop "$pebble_dir" || true
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

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

now() { date +%s.%N; }

# Seconds between two `now` readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# utime+stime of a process in seconds.
process_cpu_seconds() {
    local stat ticks
    stat=$(cat "/proc/$1/stat")
    ticks=$(getconf CLK_TCK)
    # Fields after the command name, which is in parentheses and may hold spaces:
    # state is field 3, utime 14, stime 15.
    awk -v ticks="$ticks" '{ printf "%.4f", ($12 + $13) / ticks }' <<<"${stat##*) }"
}

# Appends one row to runs.tsv: tool, run, ok, wall s, cpu s, max rss kB.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$runs"; }

# CPU seconds (user + system) of finished children in the output of the
# `times` builtin saved in file $1. `times` must run in this shell itself: a
# forked subshell would report its own counters.
children_cpu_seconds() {
    awk 'NR == 2 {
        total = 0
        for (i = 1; i <= 2; i++) { split($i, part, "m"); total += part[1] * 60 + part[2] }
        printf "%.4f", total
    }' "$1"
}

# Runs "$@" under /usr/bin/time; sets wall (s), cpu (user + system s, of the
# command and everything it waited for) and rss (peak kB). /usr/bin/time
# truncates CPU to 10 ms steps, so CPU comes from the shell's own counters,
# read right before and after with nothing else forked in between.
# Returns the command's status.
timed() {
    local time_file=$work/time.out start end status=0
    start=$(now)
    times >"$work/times.before"
    /usr/bin/time -o "$time_file" -f '%e %U %S %M' timeout "$run_timeout" "$@" || status=$?
    times >"$work/times.after"
    end=$(now)
    wall=$(elapsed "$start" "$end")
    cpu=$(awk -v a="$(children_cpu_seconds "$work/times.before")" \
        -v b="$(children_cpu_seconds "$work/times.after")" 'BEGIN { printf "%.4f", b - a }')
    # The last line: GNU time prefixes "Command exited with non-zero status N".
    read -r _ _ _ rss < <(tail -n 1 "$time_file")
    return "$status"
}

# --- set-up -------------------------------------------------------------------

log "installing what is missing"
bash deploy/local/install-deps.sh --bench
if [[ ! -x /usr/bin/time ]]; then
    log "installing time (for /usr/bin/time)"
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >/dev/null
    else
        sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >/dev/null
    fi
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the statistics"

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
printf 'tool\trun\tok\twall_s\tcpu_s\tmax_rss_kb\n' >"$runs"

port_in_use "$http01_port" && die "port $http01_port is in use; set BENCH_HTTP01_PORT"

log "starting pebble (HTTP-01 on port $http01_port)"
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    bash deploy/local/pebble.sh start "$pebble_dir" "$http01_port" >/dev/null
set -a
# shellcheck disable=SC1091
. "$pebble_dir/env"
set +a

# Waits until nothing listens on the HTTP-01 port any more.
wait_port_free() {
    for _ in $(seq 1 100); do
        port_in_use "$PEBBLE_HTTP01_PORT" || return 0
        sleep 0.05
    done
    die "port $PEBBLE_HTTP01_PORT is still in use"
}

# --- certfleet ------------------------------------------------------------------

# Extra facts for the notes under the table.
notes=$work/notes
: >"$notes"

bench_certfleet() {
    local data_dir=$work/certfleet-data grpc_port log_file=$work/certfleet.log
    grpc_port=$(free_port)
    log "certfleet: starting certfleet dev on 127.0.0.1:$grpc_port"
    "$certfleet" dev \
        --data-dir "$data_dir" \
        --grpc-listen "127.0.0.1:$grpc_port" \
        --http01-listen "127.0.0.1:$PEBBLE_HTTP01_PORT" \
        --http01-self-check-addr "127.0.0.1:$PEBBLE_HTTP01_PORT" \
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
    local admin_token org_token token_json
    admin_token=$(cat "$data_dir/admin-token")
    CERTFLEET_TOKEN=$admin_token "$certfleet" org create bench --name "Bench" \
        --email bench@example.com >>"$work/certfleet-cli.log" 2>&1 ||
        die "certfleet org create failed; see $work/certfleet-cli.log"
    token_json=$(CERTFLEET_TOKEN=$admin_token "$certfleet" token create --org bench \
        --role write --output json)
    org_token=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$token_json")

    log "certfleet: warm-up"
    CERTFLEET_TOKEN=$org_token timeout "$run_timeout" "$certfleet" cert request \
        warmup.certfleet.test --wait >>"$work/certfleet-cli.log" 2>&1 ||
        die "certfleet warm-up certificate failed; see $work/certfleet-cli.log"

    local cpu_before cpu_after i wall cpu rss
    cpu_before=$(process_cpu_seconds "$certfleet_pid")
    for i in $(seq 1 "$n"); do
        if timed env CERTFLEET_TOKEN="$org_token" "$certfleet" cert request \
            "bench-$i.certfleet.test" --wait >>"$work/certfleet-cli.log" 2>&1; then
            record certfleet "$i" 1 "$wall" "$cpu" 0
        else
            log "certfleet: run $i failed"
            record certfleet "$i" 0 "$wall" "$cpu" 0
        fi
    done
    cpu_after=$(process_cpu_seconds "$certfleet_pid")
    local hwm_kb
    hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$certfleet_pid/status")
    printf 'certfleet_server_cpu_s\t%s\ncertfleet_server_hwm_kb\t%s\n' \
        "$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { printf "%.4f", b - a }')" \
        "$hwm_kb" >>"$notes"

    kill "$certfleet_pid" 2>/dev/null || true
    wait "$certfleet_pid" 2>/dev/null || true
    certfleet_pid=
    unset CERTFLEET_ENDPOINT
    wait_port_free
}

# --- certbot ----------------------------------------------------------------------

# The command of one certificate, in the array `argv`.
certbot_command() {
    argv=(env REQUESTS_CA_BUNDLE="$CERTFLEET_CA_ROOT" certbot certonly --standalone
        --http-01-port "$PEBBLE_HTTP01_PORT"
        --server "$CERTFLEET_CA_DIRECTORY"
        --non-interactive --agree-tos -m bench@example.com --no-eff-email
        --config-dir "$work/certbot/config" --work-dir "$work/certbot/work"
        --logs-dir "$work/certbot/logs"
        -d "$1")
}

bench_certbot() {
    local i wall cpu rss argv
    log "certbot: warm-up (registers the account)"
    certbot_command warmup-certbot.certfleet.test
    "${argv[@]}" >>"$work/certbot.log" 2>&1 || die "certbot warm-up failed; see $work/certbot.log"
    wait_port_free
    for i in $(seq 1 "$n"); do
        certbot_command "certbot-$i.certfleet.test"
        if timed "${argv[@]}" >>"$work/certbot.log" 2>&1; then
            record certbot "$i" 1 "$wall" "$cpu" "$rss"
        else
            log "certbot: run $i failed"
            record certbot "$i" 0 "$wall" "$cpu" "$rss"
        fi
        wait_port_free
    done
}

# --- lego ---------------------------------------------------------------------------

lego_command() {
    argv=(env LEGO_CA_CERTIFICATES="$CERTFLEET_CA_ROOT" lego
        --server "$CERTFLEET_CA_DIRECTORY"
        --email bench@example.com --accept-tos
        --http --http.port "127.0.0.1:$PEBBLE_HTTP01_PORT"
        --domains "$1" --path "$work/lego" run)
}

bench_lego() {
    local i wall cpu rss argv
    log "lego: warm-up (registers the account)"
    lego_command warmup-lego.certfleet.test
    "${argv[@]}" >>"$work/lego.log" 2>&1 || die "lego warm-up failed; see $work/lego.log"
    wait_port_free
    for i in $(seq 1 "$n"); do
        lego_command "lego-$i.certfleet.test"
        if timed "${argv[@]}" >>"$work/lego.log" 2>&1; then
            record lego "$i" 1 "$wall" "$cpu" "$rss"
        else
            log "lego: run $i failed"
            record lego "$i" 0 "$wall" "$cpu" "$rss"
        fi
        wait_port_free
    done
}

for tool in $tools; do
    log "$tool: $n certificates"
    "bench_$tool"
done

# --- report -----------------------------------------------------------------------------

machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
versions="pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?'), certbot $(dpkg-query -W -f='${Version}' certbot 2>/dev/null || echo '?'), lego $(dpkg-query -W -f='${Version}' lego 2>/dev/null || echo '?')"
if [[ -n ${BENCH_CERTFLEET_BIN:-} ]]; then
    versions="$("$certfleet" --version 2>/dev/null || echo certfleet) ($certfleet), $versions"
elif [[ -n $certfleet ]]; then
    # Built just now from this tree.
    versions="certfleet $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+changes'), $versions"
fi

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
    ok = [row for row in mine if row["ok"] == "1"]
    walls = [float(row["wall_s"]) for row in ok]
    client_cpu = [float(row["cpu_s"]) for row in ok]
    if tool == "certfleet":
        server_cpu = float(notes.get("certfleet_server_cpu_s", "nan"))
        cpu = server_cpu / len(mine) + (statistics.mean(client_cpu) if client_cpu else 0.0)
        rss_kb = int(notes.get("certfleet_server_hwm_kb", "0"))
    else:
        cpu = statistics.mean(client_cpu) if client_cpu else float("nan")
        rss_kb = max((int(row["max_rss_kb"]) for row in ok), default=0)
    stats[tool] = dict(runs=len(mine), failed=len(mine) - len(ok), walls=walls, cpu=cpu, rss_kb=rss_kb)

base = stats.get("certfleet")
base_median = statistics.median(base["walls"]) if base and base["walls"] else None

print(f"Request→valid, one HTTP-01 certificate on Pebble, {n} timed runs per tool after one warm-up,")
print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine}. Versions: {versions}.")
print()
print("| tool | runs | failed | median s | p90 s | min s | max s | CPU s / cert | peak RSS MiB | median vs certfleet |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
          + f" | {s['cpu']:.3f} | {s['rss_kb'] / 1024:.0f} | {ratio} |")
if base:
    server = float(notes.get("certfleet_server_cpu_s", "nan")) / base["runs"]
    client = base["cpu"] - server
    print()
    print(f"certfleet CPU per certificate: `certfleet dev` {server * 1000:.1f} ms + CLI {client * 1000:.1f} ms; "
          "peak RSS is the `certfleet dev` process (VmHWM). certbot and lego: CPU and peak RSS of their own process.")
PY

cat "$out/results.md"
log "results in $out/results.md, per-run data in $runs"
