#!/usr/bin/env bash
# Coverage-guided fuzzing on STABLE Rust: libFuzzer's coverage instrumentation
# (-Cpasses=sancov-module) is a stable codegen flag; only AddressSanitizer needs nightly, and this
# workspace forbids unsafe code, so without ASan we still catch every panic, overflow (overflow
# checks and debug assertions are on) and invariant violation the targets assert.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     (defaults: 60, all four targets)
#
# Corpora persist in fuzz/corpus/<target>/ (git-ignored); crashes in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spiffe_id jwt_svid x509_svid bundle)
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# With --target, RUSTFLAGS skip build scripts and proc macros, which must not be instrumented.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$host"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  "$CARGO_TARGET_DIR/$host/release/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E 'stat::number_of_executed_units|DONE|ERROR|panicked' || true
done
