#!/usr/bin/env bash
# Runs the chaos suite (tests/tests/chaos.rs) RUNS times in a row, each with a
# fresh random seed, in a release build, and prints one line per run and
# variant: seed, wall time, operations, faults, convergence time, and the
# traffic: MiB fetched through the nodes, MiB the agents read, MiB stored.
#
#   scripts/chaos.sh [runs] [ops]        # defaults: 10 runs, CHAOS_OPS or 300
#
# Every other CHAOS_* variable (see docs/chaos.md) passes through. Full logs
# go to target/chaos/run-<n>.log; a failed run prints its replay line.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
ops="${2:-${CHAOS_OPS:-300}}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ -z "${V2RAY_BIN:-}" ] && command -v v2ray >/dev/null 2>&1; then
  V2RAY_BIN="$(command -v v2ray)"
  export V2RAY_BIN
fi
logs=target/chaos
mkdir -p "$logs"

# The suite starts the real binaries: build them (and the test) first.
cargo build --release -p bins --bins || exit 1
cargo nextest run --release -p tests --test chaos --no-run || exit 1

failed=0
printf '%-4s %-22s %-21s %9s %6s %7s %11s %8s %8s %8s  %s\n' \
  run variant seed wall_s ops faults converge_s moved_mb count_mb store_mb result
for run in $(seq 1 "$runs"); do
  seed="$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"
  log="$logs/run-$run.log"
  start=$(date +%s.%N)
  CHAOS_SEED="$seed" CHAOS_OPS="$ops" \
    cargo nextest run --release -p tests --test chaos --no-capture --no-fail-fast \
    >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  total=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  found=0
  while IFS= read -r line; do
    found=1
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    variant=$(field variant)
    result=$(field result)
    if [ "$result" = ok ]; then
      wall=$(awk -v ms="$(field wall_ms)" 'BEGIN { printf "%.1f", ms / 1000 }')
      conv=$(awk -v ms="$(field converge_ms)" 'BEGIN { printf "%.3f", ms / 1000 }')
      mib() { awk -v b="$(field "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }
      printf '%-4s %-22s %-21s %9s %6s %7s %11s %8s %8s %8s  %s\n' \
        "$run" "$variant" "$seed" "$wall" "$(field ops)" "$(field faults)" "$conv" \
        "$(mib moved_b)" "$(mib counted_b)" "$(mib stored_b)" ok
    else
      printf '%-4s %-22s %-21s %9s %6s %7s %11s %8s %8s %8s  %s\n' \
        "$run" "$variant" "$seed" "-" "-" "-" "-" "-" "-" "-" "FAILED (replay: CHAOS_SEED=$seed CHAOS_OPS=$ops cargo nextest run --release -p tests --test chaos $variant)"
    fi
  done < <(grep -a '^CHAOS-RESULT ' "$log")
  if [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
    [ "$found" = 1 ] || echo "$run: nextest failed without a result line (seed $seed); see $log"
    grep -a -A3 'DIVERGENCE\|panicked' "$log" | head -40
  fi
  echo "     (run $run: ${total}s in all, log $log)"
done
echo "runs: $runs, failed: $failed"
[ "$failed" -eq 0 ]
