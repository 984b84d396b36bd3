#!/usr/bin/env bash
# Instruction counts per JWT-SVID validation under callgrind: repeatable where wall-clock time on a
# shared machine is not. Counts only the measured loop (200 validations), never key setup.
# Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cargo bench -p svid-broker-identity --bench identity --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "identity" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-20s %15s\n' case instructions/validation
for spec in es256/floor es256/ours es256/spiffe_crate rs256/floor rs256/ours rs256/spiffe_crate; do
  SVID_BENCH_INSTRUCTIONS=$spec valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    --toggle-collect='*measured_loop*' "$bin" >/dev/null 2>"$out/log"
  total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log")
  printf '%-20s %15d\n' "$spec" $((total / 200))
done
