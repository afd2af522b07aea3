#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), seeded from seeds/<target>,
# and prints a summary line per target (executions, coverage, crashes).
#
#   cargo install cargo-fuzz --locked     # once
#   fuzz/run.sh 600                       # from the repository root
#   fuzz/run.sh 600 shopify_webhook       # one target
#
# Only the stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the
# sanitizer flags it needs (-Zsanitizer=address) on stable rustc.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  cargo fuzz build -O "$t" >/dev/null
  log="logs/$t.log"
  status=0
  cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+' || echo "?")
  crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  printf '%-22s %6ss  executions=%-10s coverage=%-6s exit=%s artifacts=%s\n' "$t" "$seconds" "$runs" "$cov" "$status" "$crashes"
done
