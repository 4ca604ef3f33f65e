#!/usr/bin/env bash
# Benchmark: what the aws-kms vault provider adds to an issuance. The median of
# 20 sequential HTTP-01 issuances through an embedded certfleet with the local
# master key, then through one whose data keys come from a KMS key in moto's
# server (on loopback), on the same Pebble. Debug build, like the tests.
#
#   bash deploy/local/bench-kms.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash deploy/local/install-deps.sh
cargo run -q -p certfleet-e2e --bin certfleet-kms-cost
