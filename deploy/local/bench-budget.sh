#!/usr/bin/env bash
# Benchmark: the rate-limit budget check (Store::reserve_budget, one
# transaction per new ACME order: the CA directory's lock row, a COUNT per
# rule, an INSERT per spending rule) with the 4 rules of a new single-name
# certificate. PostgreSQL: a fresh database pre-filled with 100,000 events
# per CA directory, 2,000 checks with 1, 4 and 16 concurrent callers against
# one directory and 16 over 4 directories; SQLite (a temporary file): 1 and
# 16 callers. Prints checks/s and p50/p99 latency. Release build.
#
#   bash deploy/local/bench-budget.sh
#   BENCH_CALLS=5000 BENCH_EVENTS=1000000 bash deploy/local/bench-budget.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/local/install-deps.sh
cargo run --release -q -p certfleet-e2e --bin certfleet-budget-check
