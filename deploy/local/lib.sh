# shellcheck shell=bash
# What the throwaway-server scripts (bind.sh, pdns.sh, pebble.sh) share;
# sourced by them, not run on its own. A script sets USAGE, defines
# `start STATE_DIR ...` and `stop STATE_DIR`, and ends with `main "$@"`.
# Messages name the script (${0##*/}).

# Prints the usage line ("usage: SCRIPT $USAGE") and exits 2.
usage() {
    echo "usage: $0 $USAGE" >&2
    exit 2
}

# Runs `start ARG...` or `stop STATE_DIR` as the command line asks.
main() {
    [[ $# -ge 2 ]] || usage
    case $1 in
    start) start "${@:2}" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    *) usage ;;
    esac
}

# Exits 1 unless every command is on PATH or in /usr/sbin (daemons are run
# from there when it is not on PATH).
require_commands() {
    local bin
    for bin in "$@"; do
        if ! command -v "$bin" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$bin ]]; then
            echo "${0##*/}: $bin not found; run deploy/local/install-deps.sh" >&2
            exit 1
        fi
    done
}

# Exits 2 unless every argument is a lower-case zone name.
require_zone_names() {
    local zone
    for zone in "$@"; do
        if [[ ! $zone =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]]; then
            echo "${0##*/}: $zone is not a lower-case zone name" >&2
            exit 2
        fi
    done
}

# Prints a port on 127.0.0.1 that nothing listens on over TCP right now.
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

# True while the process in PID_FILE runs.
pid_alive() {
    local file=$1
    [[ -s $file ]] && process_running "$(cat "$file")"
}

# stop_pid PID_FILE [STEP]: stops the process in PID_FILE (SIGTERM, then
# SIGKILL after 50 checks STEP seconds apart, default 0.1) and removes the file.
stop_pid() {
    local file=$1 step=${2:-0.1} pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if process_running "$pid"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            process_running "$pid" || break
            sleep "$step"
        done
        if process_running "$pid"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

# Says that the server in STATE_DIR already runs and prints its env.
already_running() {
    local state=$1
    echo "${0##*/}: already running, see $state/env" >&2
    cat "$state/env"
}

# wait_up TRIES CHECK STATE_DIR PID_FILE...: true once `CHECK STATE_DIR`
# succeeds, tried every 0.1 s at most TRIES times; false at once when the
# process of a PID_FILE is gone.
wait_up() {
    local tries=$1 check=$2 state=$3 file
    shift 3
    for _ in $(seq 1 "$tries"); do
        "$check" "$state" && return 0
        for file in "$@"; do
            pid_alive "$file" || return 1
        done
        sleep 0.1
    done
    return 1
}
