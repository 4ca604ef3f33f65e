#!/usr/bin/env bash
# Benchmark: `certfleet vault rewrap` throughput in keys per second. An
# embedded certfleet issues 400 certificates from Pebble into SQLite, then the
# stored blobs are rewrapped master key -> master key, master key -> KMS key
# (moto's server on loopback) and KMS key -> KMS key, in batches of 200 with 8
# at once (the command's defaults). Debug build, like the tests.
#
#   bash deploy/local/bench-rewrap.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/local/install-deps.sh
cargo run -q -p certfleet-e2e --bin certfleet-rewrap-rate
