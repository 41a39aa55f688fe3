#!/usr/bin/env bash
# The harness 0.5 republish (issue "A verdict that survives review"): 10 seeds for prompting and the probe, 5 for
# the whole-model regimes, every template chosen on dev per seed, whole test splits (agnews: a fixed 2000-item
# subset). Resumable (finished cells are skipped); processes share one run folder and split its cells (each cell is
# locked). On the 2-core CPU: two one-thread lanes. On a GPU machine every cell must come from it (one device kind
# for the page): PROCESSES=6 (default 2) runs that many processes over each run file in turn.
#   bash leaderboard/republish-0.5-cpu.sh [DATA_DIR] [RUN_DIR] [LANE: a, b or all]
# The page: the verdict requires the whole-model regimes, so a task is "incomplete" until they ran there.
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-0.5-cpu}
LANE=${3:-all}
PROCESSES=${PROCESSES:-2}
if [[ $PROCESSES -le 2 ]]; then export OMP_NUM_THREADS=1; fi
run() { local file=$1; shift; harness eval --config "leaderboard/run-files/cpu-0.5/$file.yaml" --data-dir "$DATA" --out "$RUNS" "$@"; }
lane_a() { run prompting-probe; run agnews; }
lane_b() { run whole-model; run whole-model --tasks agnews --limit 2000; run lp-ft; run lp-ft --tasks agnews --limit 2000; }
many() { for i in $(seq "$PROCESSES"); do run "$@" & done; wait; }
if [[ $PROCESSES -gt 2 ]]; then
  many prompting-probe; many agnews; many whole-model; many whole-model --tasks agnews --limit 2000
  many lp-ft; many lp-ft --tasks agnews --limit 2000
else
  case "$LANE" in
    a) lane_a ;;
    b) lane_b ;;
    all) lane_a & lane_b & wait ;;
  esac
fi
harness leaderboard "$RUNS" --out leaderboard --k 16 --group-by model --notes leaderboard/NOTES.md \
  --require zero-shot,few-shot,head,full,prompt-ft,lora,scratch,tfidf
