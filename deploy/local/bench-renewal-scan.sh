#!/usr/bin/env bash
# Benchmark: the scheduler's renewal scan over 100,000 and 1,000,000
# certificates in PostgreSQL. Each size gets a fresh database, filled with
# plain SQL (1,000 organizations, renewal times spread over 60 days, 1% due
# now); the due-set query is timed (first batch of 500, whole due set, with
# EXPLAIN ANALYZE), then the release certfleet-scheduler renews the due set
# against a fresh RabbitMQ vhost while its memory (VmHWM, VmRSS) is read from
# /proc. Release build.
#
#   bash deploy/local/bench-renewal-scan.sh
#   BENCH_SIZES=100000 bash deploy/local/bench-renewal-scan.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/local/install-deps.sh
cargo build --release -p certfleet-scheduler
cargo run --release -q -p certfleet-e2e --bin certfleet-renewal-scan
