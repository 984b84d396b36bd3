#!/usr/bin/env bash
# The token-exchange service benchmarks of docs/performance.md, one run each, with the same load
# generator (crates/loadgen): the crypto floor, then every scenario (gRPC mTLS; gRPC JWT-SVID
# bearer and the realm, cold and warm; the realm with a login credential), then the churn test
# (1,000,000 distinct subjects over ten minutes, broker RSS sampled every 5 s).
#
# The broker runs as a child process pinned to CPU 0 and the load generator to CPU 1
# (`--pin`, through taskset); the issued-token cache is off for the scenarios and on for churn.
#
# Usage: scripts/bench-service.sh [OUT_DIR]   (default target/bench-service)
#        SKIP_CHURN=1 scripts/bench-service.sh   (scenarios only, about 4 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-service}
mkdir -p "$out"
cargo build --release -p svid-broker -p svid-broker-loadgen
loadgen=target/release/svid-broker-loadgen
"$loadgen" --pin --json "$out/scenarios.json" | tee "$out/scenarios.md"
if [ "${SKIP_CHURN:-0}" != 1 ]; then
    "$loadgen" --pin --churn --json "$out/churn.json" | tee "$out/churn.md"
fi
