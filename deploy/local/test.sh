#!/usr/bin/env bash
# README command (2): everything CI checks, against real parts.
#
#   deploy/local/test.sh [NEXTEST_ARGS...]
#
# Installs missing test dependencies, then runs rustfmt, clippy and the whole
# test suite with cargo-nextest. With CI=true and no CARGO_TARGET_DIR, builds
# into /var/cache/certfleet-target (a cache kept outside the clone).
set -euo pipefail

cd "$(dirname "$0")/../.."

if [[ -z ${CARGO_TARGET_DIR:-} && ${CI:-} == true ]]; then
    export CARGO_TARGET_DIR=/var/cache/certfleet-target
    mkdir -p "$CARGO_TARGET_DIR"
fi

bash deploy/local/install-deps.sh
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the `certfleet` binary itself (crash and restart)
# and the four binaries of the distributed mode.
cargo build -p certfleet -p certfleet-api-bin -p certfleet-responder-bin -p certfleet-issuer -p certfleet-scheduler -p certfleet-agent -p certfleet-notifier
cargo nextest run --workspace --no-fail-fast "$@"
