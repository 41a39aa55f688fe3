#!/usr/bin/env bash
# The harness 0.5 republish on the CPU (issue "A verdict that survives review"): 10 seeds for prompting and the
# probe, 5 for the whole-model regimes, every template chosen on dev per seed, whole test splits (agnews: a fixed
# 2000-item subset). Two one-thread lanes on two cores; resumable (finished cells are skipped).
#   bash leaderboard/republish-0.5-cpu.sh [DATA_DIR] [RUN_DIR] [LANE: a, b or all]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-0.5-cpu}
LANE=${3:-all}
export OMP_NUM_THREADS=1
run() { local file=$1; shift; harness eval --config "leaderboard/run-files/cpu-0.5/$file.yaml" --data-dir "$DATA" --out "$RUNS" "$@"; }
lane_a() { run prompting-probe; run agnews; }
lane_b() { run whole-model; run whole-model --tasks agnews --limit 2000; run lp-ft; run lp-ft --tasks agnews --limit 2000; }
case "$LANE" in
  a) lane_a ;;
  b) lane_b ;;
  all) lane_a & lane_b & wait ;;
esac
harness leaderboard "$RUNS" --out leaderboard --k 16 --group-by model --notes leaderboard/NOTES.md
