#!/usr/bin/env bash
# Benchmark: bulk issuance. BULK_N HTTP-01 certificates on Pebble, issued by
# the distributed certfleet with 1, 2 and 4 issuers, beside certbot and lego
# (Debian packages) issuing as many the way an operator scripts a batch, on
# the same Pebble, in the same run, one after the other (DESIGN.md §11: 1,000
# certificates on 2 cores, ≥ 20 certificates/s, no failures).
#
#   bash deploy/local/bench-bulk.sh
#
# Environment:
#   BULK_N=1000                        certificates per row of the table
#   BULK_ISSUERS="1 2 4"               certfleet-issuer processes, one certfleet row each
#   BULK_TOOLS="certfleet certbot lego"   which tools, in this order
#   BULK_CONCURRENCY=64                CreateCertificate calls in flight (certfleet)
#   BULK_ORDERS=8                      ACME orders in flight over all issuers: each of k
#                                      issuers gets ceil(8/k) (0: certfleet's own
#                                      default, 32 per issuer, or CERTFLEET_ISSUER_CONCURRENCY)
#   BULK_PARALLEL=8                    client processes at a time (certbot, lego)
#   BULK_TIMEOUT=600                   seconds certfleet may take for one row
#   BULK_ATTEMPTS=5                    tries of a row whose Pebble deadlocked (see below)
#   BULK_HTTP01_PORT=                  the port Pebble validates HTTP-01 on (default: a free one)
#   BULK_OUT=target/bench-bulk         where results.md, certificates.tsv and batches.tsv go
#   BULK_TARGET_DIR=DIR                use the release binaries in DIR instead of building them
#   BULK_KEEP=1                        keep the scratch directory (logs, certificates)
# CERTFLEET_LOG, when set, reaches the stack's processes (default info).
#
# certfleet: for each issuer count, deploy/local/stack.sh starts one api, the
# issuers, one scheduler and one responder (release binaries, a fresh
# PostgreSQL database and RabbitMQ vhost) on the shared Pebble; the load
# generator certfleet-bulk (tests/bin/bulk.rs) creates an organization and a
# write token, binds a queue of its own to certfleet.events, sends BULK_N
# CreateCertificate calls (BULK_CONCURRENCY in flight) and times each from its
# call to its certificate.issued event; then the stack is stopped.
# certbot and lego: one client command per certificate, BULK_PARALLEL at a time
# (`xargs -P`), in webroot mode (several processes cannot all bind the HTTP-01
# port) with one threaded static file server (python3 -m http.server) on the
# HTTP-01 port; each command's wall time is its request→valid time. certbot
# gets a config dir per parallel slot (it locks it), each with its account
# registered first; lego shares one --path after one warm-up certificate.
# Both untimed. Throughput: valid certificates / wall time of the whole batch
# (certfleet: first call to last issued event; certbot, lego: the xargs run).
# The certfleet rows share BULK_ORDERS orders in flight among their issuers,
# so they compare 1, 2 and 4 processes at the same load on the CA, and so
# Pebble gets few simultaneous new orders (below). 8 in flight issue as fast
# as 32 on two cores (both about 70-95 certificates/s), with fewer deadlocks.
# Pebble 2.4 (Debian's) can deadlock when many new orders arrive at once (a
# lock-order inversion in its in-memory store: it then still serves /dir and
# nonces but nothing else, for good). Every 15 s the script asks Pebble for
# something that reads its store; when it does not answer twice in a row,
# Pebble writes its goroutines to its log (SIGQUIT; copied to
# $BULK_OUT/pebble-deadlock-N.log), a fresh Pebble is started on the same
# HTTP-01 port and the row runs again from scratch, up to BULK_ATTEMPTS times
# (a row that never got through has no measurement: all its certificates
# count as failed); results.md lists such restarts. Otherwise one Pebble
# serves the whole run.
# Prints a Markdown table and writes it to $BULK_OUT/results.md; exits 1 when
# a certificate failed (after the table).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

n=${BULK_N:-1000}
issuer_counts=${BULK_ISSUERS:-1 2 4}
tools=${BULK_TOOLS:-certfleet certbot lego}
concurrency=${BULK_CONCURRENCY:-64}
orders=${BULK_ORDERS:-8}
parallel=${BULK_PARALLEL:-8}
certfleet_timeout=${BULK_TIMEOUT:-600}
attempts=${BULK_ATTEMPTS:-5}
http01_port=${BULK_HTTP01_PORT:-0}
out=${BULK_OUT:-$root/target/bench-bulk}
keep=${BULK_KEEP:-0}
# Per certbot or lego command.
run_timeout=300

log() { echo "bench-bulk: $*" >&2; }
die() {
    log "$*"
    exit 1
}

positive() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
positive "$n" || die "BULK_N must be a positive integer, not '$n'"
positive "$concurrency" || die "BULK_CONCURRENCY must be a positive integer, not '$concurrency'"
[[ $orders =~ ^[0-9]+$ ]] || die "BULK_ORDERS must be a number, not '$orders'"
positive "$parallel" || die "BULK_PARALLEL must be a positive integer, not '$parallel'"
positive "$certfleet_timeout" || die "BULK_TIMEOUT must be a positive integer, not '$certfleet_timeout'"
positive "$attempts" || die "BULK_ATTEMPTS must be a positive integer, not '$attempts'"
[[ $http01_port =~ ^[0-9]+$ ]] || die "BULK_HTTP01_PORT must be a port number, not '$http01_port'"
for tool in $tools; do
    case $tool in
    certfleet | certbot | lego) ;;
    *) die "unknown tool '$tool' in BULK_TOOLS (certfleet, certbot, lego)" ;;
    esac
done
if [[ " $tools " == *" certfleet "* ]]; then
    [[ -n ${issuer_counts// /} ]] || die "BULK_ISSUERS is empty"
    for k in $issuer_counts; do
        positive "$k" || die "BULK_ISSUERS must hold positive integers, not '$k'"
    done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/certfleet-bench-bulk.XXXXXX")
# The running Pebble's state: $work/pebble-1, then -2, … after a deadlock.
pebble_dir=
pebble_starts=0
stack_state=
file_server_pid=
batch_pid=

# The database and vhost stack.sh names after a state directory.
stack_name() {
    local base
    base=$(basename "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_\n' '_')
    echo "certfleet_stack_${base}"
}

rabbitmqctl_cmd() {
    if command -v rabbitmqctl >/dev/null 2>&1; then
        rabbitmqctl "$@"
    else
        /usr/sbin/rabbitmqctl "$@"
    fi
}

stop_stack() {
    local state=$1
    [[ -d $state ]] || return 0
    local name had_name=false
    name=$(stack_name "$state")
    [[ -s $state/name ]] && had_name=true
    bash "$root/deploy/local/stack.sh" stop "$state" >>"$work/stack.log" 2>&1 || true
    if ! $had_name; then
        # stack.sh start was interrupted before it recorded the names it had
        # created: drop them here if they exist.
        psql "${CERTFLEET_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}" -q \
            -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
        if rabbitmqctl_cmd list_vhosts -q 2>/dev/null | grep -qx "$name"; then
            rabbitmqctl_cmd delete_vhost "$name" >/dev/null 2>&1 || true
        fi
    fi
}

# Kills a background job started with job control on: its whole process group.
# The group outlives its leader when only the leader was killed (a signal to
# the whole script's processes), so the group is signalled in any case.
kill_group() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap '' INT TERM
    if [[ -n $batch_pid ]]; then
        kill_group "$batch_pid"
    fi
    if [[ -n $file_server_pid ]]; then
        kill "$file_server_pid" 2>/dev/null || true
        wait "$file_server_pid" 2>/dev/null || true
    fi
    if [[ -n $stack_state ]]; then
        log "stopping the stack in $stack_state"
        stop_stack "$stack_state"
    fi
    if [[ -n $pebble_dir ]]; then
        bash "$root/deploy/local/pebble.sh" stop "$pebble_dir" || true
    fi
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

# Seconds between two $EPOCHREALTIME readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# EPOCHREALTIME must use a decimal point.
export LC_NUMERIC=C

# --- set-up -------------------------------------------------------------------

log "installing what is missing"
bash deploy/local/install-deps.sh --bench
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the file server and the statistics"

bin_dir=
if [[ " $tools " == *" certfleet "* ]]; then
    if [[ -n ${BULK_TARGET_DIR:-} ]]; then
        bin_dir=$(cd "$BULK_TARGET_DIR" && pwd)
    else
        log "building the distributed binaries and certfleet-bulk (release)"
        cargo build -q --release -p certfleet-api-bin -p certfleet-responder-bin \
            -p certfleet-issuer -p certfleet-scheduler -p certfleet-e2e
        bin_dir=$(cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release
    fi
    for binary in certfleet-api certfleet-responder certfleet-issuer certfleet-scheduler certfleet-bulk; do
        [[ -x $bin_dir/$binary ]] || die "no $binary in $bin_dir (set BULK_TARGET_DIR to a release build, or unset it)"
    done
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
certificates_tsv=$out/certificates.tsv
batches_tsv=$out/batches.tsv
printf 'tool\tsetting\tname\tid\trequest_start_s\tvalid_s\tlatency_s\tok\n' >"$certificates_tsv"
printf 'tool\tsetting\tcertificates\twall_s\n' >"$batches_tsv"
# Pebble restarts, one line each, for the notes under the table.
restarts=$work/restarts
: >"$restarts"

if [[ $http01_port != 0 ]] && port_in_use "$http01_port"; then
    die "port $http01_port is in use; set BULK_HTTP01_PORT"
fi

# Starts a Pebble in $work/pebble-N and exports its settings; the HTTP-01 port
# chosen by the first one is kept by the next ones.
start_pebble() {
    pebble_starts=$((pebble_starts + 1))
    pebble_dir=$work/pebble-$pebble_starts
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        bash deploy/local/pebble.sh start "$pebble_dir" "$http01_port" >/dev/null
    set -a
    # shellcheck disable=SC1091
    . "$pebble_dir/env"
    set +a
    http01_port=$PEBBLE_HTTP01_PORT
    export REQUESTS_CA_BUNDLE=$CERTFLEET_CA_ROOT LEGO_CA_CERTIFICATES=$CERTFLEET_CA_ROOT
}

# After a deadlock: keeps the old Pebble's log, starts a fresh one. $1 names the row.
restart_pebble() {
    local old=$pebble_dir
    cp "$old/pebble.log" "$out/pebble-deadlock-$pebble_starts.log" 2>/dev/null || true
    bash deploy/local/pebble.sh stop "$old" || true
    printf '%s\n' "$1" >>"$restarts"
    start_pebble
    log "a fresh Pebble runs (state $pebble_dir); the deadlocked one's log is $out/pebble-deadlock-$((pebble_starts - 1)).log"
}

log "starting pebble"
start_pebble
log "pebble validates HTTP-01 on port $PEBBLE_HTTP01_PORT"

# Waits until nothing listens on the HTTP-01 port any more.
wait_port_free() {
    for _ in $(seq 1 100); do
        port_in_use "$PEBBLE_HTTP01_PORT" || return 0
        sleep 0.05
    done
    die "port $PEBBLE_HTTP01_PORT is still in use"
}

# True when Pebble answers a request that needs its store: the management
# port's certificate status (404 for this serial). Pebble 2.4 can deadlock
# under many concurrent new orders (a lock-order inversion in its in-memory
# store); it then still serves /dir and nonces, but nothing that reads the store.
pebble_answers() {
    curl -s -o /dev/null --max-time 10 --cacert "$CERTFLEET_CA_ROOT" \
        "$PEBBLE_MANAGEMENT/cert-status-by-serial/00"
}

# Runs "$@" in the background in a process group of its own (so cleanup can
# end it with everything it started) and waits for it; returns its status.
# Every 15 s it checks that Pebble still answers; after two misses in a row it
# has Pebble write its goroutines to its log (SIGQUIT), ends the job and
# returns 99.
pebble_deadlocked=99
run_group() {
    local status=0 ticks=0 misses=0
    set -m
    "$@" &
    batch_pid=$!
    set +m
    while kill -0 "$batch_pid" 2>/dev/null; do
        sleep 0.2
        ((++ticks % 75 == 0)) || continue
        if pebble_answers; then
            misses=0
        elif ((++misses >= 2)); then
            log "Pebble does not answer any more (deadlocked): this try of the row is void"
            kill -QUIT "$(cat "$pebble_dir/pebble.pid")" 2>/dev/null || true
            kill_group "$batch_pid"
            batch_pid=
            sleep 1
            return "$pebble_deadlocked"
        fi
    done
    wait "$batch_pid" || status=$?
    batch_pid=
    return "$status"
}

# --- certfleet ------------------------------------------------------------------

# One try of the row with $1 issuers: the stack, the load generator, the
# stack stopped again. Returns the load generator's status (or 99).
certfleet_try() {
    local k=$1 attempt=$2 state stack_out endpoint amqp_url status=0
    state=$work/bulk-$$-k$k-$attempt
    stack_out=$work/stack-k$k-$attempt.out
    local -a issuer_env=()
    if [[ $orders -gt 0 ]]; then
        issuer_env=(CERTFLEET_ISSUER_CONCURRENCY=$(((orders + k - 1) / k)))
    fi
    log "certfleet: starting the stack with $k issuer(s) ${issuer_env[*]}"
    stack_state=$state
    if ! env "${issuer_env[@]}" API=1 ISSUERS="$k" SCHEDULERS=1 RESPONDERS=1 STACK_PEBBLE_DIR="$pebble_dir" \
        STACK_BIN_DIR="$bin_dir" bash deploy/local/stack.sh start "$state" >"$stack_out" 2>&1; then
        tail -n 30 "$stack_out" >&2 || true
        die "the stack with $k issuer(s) did not start; see $stack_out"
    fi
    endpoint=$(sed -n 's/^  gRPC API: *//p' "$stack_out" | head -n 1)
    amqp_url=$(sed -n 's/^CERTFLEET_AMQP_URL=//p' "$state/stack.env")
    [[ -n $endpoint && -n $amqp_url ]] || die "no endpoint or AMQP URL in $stack_out and $state/stack.env"

    log "certfleet: $n certificates, $k issuer(s), $concurrency requests in flight"
    run_group "$bin_dir/certfleet-bulk" \
        --endpoint "$endpoint" --amqp-url "$amqp_url" \
        --admin-token-file "$state/admin-token" --org bulk \
        --count "$n" --concurrency "$concurrency" \
        --names "bulk-k$k-{i}.certfleet.test" --timeout "$certfleet_timeout" \
        --tsv "$work/certfleet-k$k.tsv" --summary "$work/certfleet-k$k.summary" \
        >"$work/certfleet-k$k.out" || status=$?
    cat "$work/certfleet-k$k.out" >&2

    log "certfleet: stopping the stack"
    stop_stack "$state"
    stack_state=
    wait_port_free
    return "$status"
}

bench_certfleet() {
    local k attempt status
    for k in $issuer_counts; do
        for ((attempt = 1; attempt <= attempts; attempt++)); do
            status=0
            certfleet_try "$k" "$attempt" || status=$?
            [[ $status -eq $pebble_deadlocked ]] || break
            restart_pebble "certfleet, $k issuer(s), try $attempt"
        done
        if [[ $status -eq $pebble_deadlocked ]]; then
            log "certfleet: Pebble deadlocked in each of $attempts tries with $k issuer(s); the row has no measurement"
        fi
        if [[ $status -gt 1 ]]; then
            # Not a measurement (no queue, no stack, a deadlocked Pebble):
            # every certificate counts as failed.
            log "certfleet: no measurement with $k issuer(s) (exit $status)"
            for i in $(seq 1 "$n"); do
                printf 'certfleet\t%s\tbulk-k%s-%s.certfleet.test\t\t\t\t\t0\n' "$k" "$k" "$i" >>"$certificates_tsv"
            done
            printf 'certfleet\t%s\t%s\tnan\n' "$k" "$n" >>"$batches_tsv"
        else
            awk -F '\t' -v OFS='\t' -v k="$k" 'NR > 1 { print "certfleet", k, $1, $2, $3, $4, $5, $6 }' \
                "$work/certfleet-k$k.tsv" >>"$certificates_tsv"
            printf 'certfleet\t%s\t%s\t%s\n' "$k" "$n" \
                "$(awk -F '\t' '$1 == "wall_s" { print $2 }' "$work/certfleet-k$k.summary")" >>"$batches_tsv"
        fi
    done
}

# --- certbot and lego -----------------------------------------------------------

webroot=$work/webroot

# One static file server on the HTTP-01 port for every certbot and lego process.
start_file_server() {
    [[ -n $file_server_pid ]] && return 0
    wait_port_free
    mkdir -p "$webroot"
    python3 -m http.server --bind 127.0.0.1 --directory "$webroot" "$PEBBLE_HTTP01_PORT" \
        >"$work/file-server.log" 2>&1 </dev/null &
    file_server_pid=$!
    for _ in $(seq 1 100); do
        port_in_use "$PEBBLE_HTTP01_PORT" && return 0
        kill -0 "$file_server_pid" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 20 "$work/file-server.log" >&2 || true
    die "the file server did not listen on port $PEBBLE_HTTP01_PORT"
}

# The command of one certificate, in the array `argv`: TOOL NAME SLOT.
# Exported with what it needs: the xargs children run it.
client_command() {
    local tool=$1 name=$2 slot=$3
    case $tool in
    certbot)
        argv=(certbot certonly --webroot -w "$BULK_WEBROOT"
            --server "$CERTFLEET_CA_DIRECTORY"
            --non-interactive --agree-tos -m bench@example.com --no-eff-email
            --config-dir "$BULK_WORK/certbot/$slot/config" --work-dir "$BULK_WORK/certbot/$slot/work"
            --logs-dir "$BULK_WORK/certbot/$slot/logs"
            -d "$name")
        ;;
    lego)
        argv=(lego --server "$CERTFLEET_CA_DIRECTORY"
            --email bench@example.com --accept-tos
            --http --http.webroot "$BULK_WEBROOT"
            --domains "$name" --path "$BULK_WORK/lego" run)
        ;;
    esac
}

# One timed certificate, run by xargs: TOOL NAME. Appends name, start, end
# ($EPOCHREALTIME) and exit status to the slot's own file; never fails.
run_one() {
    local tool=$1 name=$2 slot=${BULK_SLOT:-0} start end status=0 argv
    client_command "$tool" "$name" "$slot"
    start=$EPOCHREALTIME
    timeout --foreground "$BULK_RUN_TIMEOUT" "${argv[@]}" >>"$BULK_WORK/$tool-$slot.log" 2>&1 </dev/null ||
        status=$?
    end=$EPOCHREALTIME
    printf '%s\t%s\t%s\t%s\n' "$name" "$start" "$end" "$status" >>"$BULK_WORK/$tool-times-$slot.tsv"
}
export -f client_command run_one
export BULK_WORK=$work BULK_WEBROOT=$webroot BULK_RUN_TIMEOUT=$run_timeout

# Untimed: certbot registers an account in each slot's config dir, lego gets
# one certificate (which registers its account in the shared --path).
warm_up() {
    local tool=$1 slot argv pids=() pid
    case $tool in
    certbot)
        for ((slot = 0; slot < parallel; slot++)); do
            certbot register --server "$CERTFLEET_CA_DIRECTORY" \
                --non-interactive --agree-tos -m bench@example.com --no-eff-email \
                --config-dir "$work/certbot/$slot/config" --work-dir "$work/certbot/$slot/work" \
                --logs-dir "$work/certbot/$slot/logs" >>"$work/certbot-warmup.log" 2>&1 </dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || die "certbot register failed; see $work/certbot-warmup.log"
        done
        ;;
    lego)
        client_command lego warmup-lego.certfleet.test 0
        timeout "$run_timeout" "${argv[@]}" >>"$work/lego-warmup.log" 2>&1 </dev/null ||
            die "lego warm-up failed; see $work/lego-warmup.log"
        ;;
    esac
}

# The names TOOL-1.certfleet.test … TOOL-N.certfleet.test, one command each,
# $parallel at a time; xargs numbers the running ones' slots 0 … parallel-1.
# Notes the batch's start and end ($EPOCHREALTIME) in $work/TOOL-batch.
client_batch() {
    local tool=$1 start
    start=$EPOCHREALTIME
    # shellcheck disable=SC2016 # $@ is the inner shell's
    seq 1 "$n" | sed "s/.*/$tool-&.certfleet.test/" |
        xargs -P "$parallel" -n 1 --process-slot-var=BULK_SLOT bash -c 'run_one "$@"' _ "$tool"
    printf '%s\t%s\n' "$start" "$EPOCHREALTIME" >"$work/$tool-batch"
}

# One try of the row: fresh client state (accounts belong to one Pebble),
# warm-up, the timed batch. Returns 0, or 99 when Pebble deadlocked.
client_try() {
    local tool=$1 status=0
    rm -rf "${work:?}/$tool" "$work/$tool-batch"
    rm -f "$work/$tool"-times-*.tsv
    case $tool in
    certbot) log "certbot: warm-up (registers an account in each of the $parallel config dirs)" ;;
    lego) log "lego: warm-up (one certificate, registers the account)" ;;
    esac
    warm_up "$tool"
    log "$tool: $n certificates, $parallel processes at a time"
    run_group client_batch "$tool" || status=$?
    [[ $status -eq 0 || $status -eq $pebble_deadlocked ]] || die "$tool: the batch did not run (exit $status)"
    return "$status"
}

bench_client() {
    local tool=$1 attempt status batch_start batch_end
    start_file_server
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        status=0
        client_try "$tool" || status=$?
        [[ $status -eq $pebble_deadlocked ]] || break
        restart_pebble "$tool, try $attempt"
    done
    if [[ $status -eq $pebble_deadlocked ]]; then
        log "$tool: Pebble deadlocked in each of $attempts tries; the row has no measurement"
        for i in $(seq 1 "$n"); do
            printf '%s\t%s\t%s-%s.certfleet.test\t\t\t\t\t0\n' "$tool" "$parallel" "$tool" "$i" >>"$certificates_tsv"
        done
        printf '%s\t%s\t%s\tnan\n' "$tool" "$parallel" "$n" >>"$batches_tsv"
        return 0
    fi
    read -r batch_start batch_end <"$work/$tool-batch"
    cat "$work/$tool"-times-*.tsv | awk -F '\t' -v OFS='\t' -v tool="$tool" -v setting="$parallel" \
        -v origin="$batch_start" '{
            ok = $4 == 0 ? 1 : 0
            latency = sprintf("%.4f", $3 - $2)
            valid = ok ? sprintf("%.4f", $3 - origin) : ""
            print tool, setting, $1, "", sprintf("%.4f", $2 - origin), valid, ok ? latency : "", ok
        }' >>"$certificates_tsv"
    printf '%s\t%s\t%s\t%s\n' "$tool" "$parallel" "$n" "$(elapsed "$batch_start" "$batch_end")" >>"$batches_tsv"
    local failed
    failed=$(awk -F '\t' '$4 != 0' "$work/$tool"-times-*.tsv | wc -l)
    log "$tool: done in $(elapsed "$batch_start" "$batch_end") s, $failed failed"
}

for tool in $tools; do
    case $tool in
    certfleet) bench_certfleet ;;
    *) bench_client "$tool" ;;
    esac
done

# --- report -----------------------------------------------------------------------------

machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
versions="pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?'), certbot $(dpkg-query -W -f='${Version}' certbot 2>/dev/null || echo '?'), lego $(dpkg-query -W -f='${Version}' lego 2>/dev/null || echo '?')"
if [[ -n ${BULK_TARGET_DIR:-} ]]; then
    versions="certfleet binaries in $bin_dir, $versions"
elif [[ -n $bin_dir ]]; then
    # Built just now from this tree.
    versions="certfleet $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+changes'), $versions"
fi
if [[ $orders -gt 0 ]]; then
    per_issuer="$orders ACME orders in flight over all issuers (each of k issuers: ceil($orders/k))"
else
    per_issuer="${CERTFLEET_ISSUER_CONCURRENCY:-32} ACME orders in flight per issuer"
fi
settings="certfleet: $concurrency CreateCertificate calls in flight, $per_issuer; certbot, lego: $parallel processes at a time"

python3 - "$certificates_tsv" "$batches_tsv" "$n" "$machine" "$versions" "$settings" "$restarts" \
    >"$out/results.md" <<'PY'
import csv
import math
import sys
from datetime import datetime, timezone

certificates_path, batches_path, n, machine, versions, settings, restarts_path = sys.argv[1:8]
restarts = [line.strip() for line in open(restarts_path) if line.strip()]
rows = list(csv.DictReader(open(certificates_path), delimiter="\t"))
batches = list(csv.DictReader(open(batches_path), delimiter="\t"))


def nearest_rank(ordered, fraction):
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


table = []
for batch in batches:
    mine = [row for row in rows if row["tool"] == batch["tool"] and row["setting"] == batch["setting"]]
    latencies = sorted(float(row["latency_s"]) for row in mine if row["ok"] == "1")
    certificates = int(batch["certificates"])
    failed = certificates - len(latencies)
    wall = float(batch["wall_s"])
    rate = len(latencies) / wall if latencies and wall > 0 else float("nan")
    table.append(dict(tool=batch["tool"], setting=batch["setting"], certificates=certificates,
                      failed=failed, wall=wall, rate=rate, latencies=latencies))

best = max((row["rate"] for row in table if row["tool"] == "certfleet" and not math.isnan(row["rate"])),
           default=None)


def number(value, digits):
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


print(f"Bulk issuance, {n} HTTP-01 certificates per row on Pebble, "
      f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine}. Versions: {versions}. "
      f"Settings: {settings}.")
print()
print("| tool | issuers / processes | certificates | failed | wall s | certificates/s | p50 s | p99 s | certificates/s vs best certfleet |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in table:
    setting = f"{row['setting']} issuer{'s' if row['setting'] != '1' else ''}" if row["tool"] == "certfleet" \
        else f"{row['setting']} processes"
    latencies = row["latencies"]
    p50 = f"{nearest_rank(latencies, 0.50):.3f}" if latencies else "—"
    p99 = f"{nearest_rank(latencies, 0.99):.3f}" if latencies else "—"
    ratio = f"{row['rate'] / best:.2f}×" if best and not math.isnan(row["rate"]) else "n/a"
    print(f"| {row['tool']} | {setting} | {row['certificates']} | {row['failed']} | {number(row['wall'], 1)} "
          f"| {number(row['rate'], 1)} | {p50} | {p99} | {ratio} |")
print()
print("certificates/s: valid certificates / wall time of the batch (certfleet: first CreateCertificate call "
      "to last certificate.issued event; certbot, lego: start to end of the xargs run). p50, p99: "
      "request→valid of one certificate (certfleet: CreateCertificate sent → its certificate.issued event "
      "received; certbot, lego: one client command, process start included), nearest rank.")
if restarts:
    print()
    print(f"Pebble deadlocked and was restarted {len(restarts)} time(s), the row then run again from scratch "
          f"on the fresh Pebble: {'; '.join(restarts)} (goroutine dumps: pebble-deadlock-*.log).")
PY

cat "$out/results.md"
log "results in $out/results.md, per-certificate data in $certificates_tsv"
total_failed=$(awk -F '\t' 'NR > 1 && $8 != 1' "$certificates_tsv" | wc -l)
if [[ $total_failed -gt 0 ]]; then
    die "$total_failed certificates failed (see $certificates_tsv)"
fi
