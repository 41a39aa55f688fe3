#!/usr/bin/env bash
# Few-shot with the number of demos per class chosen on dev (issue "Fair prompting"): harness 0.3's default
# (--demos dev), plain and with the dev-prior calibration, on sst2 and subj at k = 16 per class, 5 seeds, 500 test
# examples, every template (each seed's dev set picks one). Compare with the calibration study, whose few-shot put
# all k demos in the prompt (harness 0.2). trec and bbc_news were left out for CPU time (bbc_news's 80 long demos
# overflow the context, so every prompt is a separate 2048-token forward for each m tried). CPU fp32, one torch
# thread beside another job; about an hour on 2 cores.
#   bash leaderboard/studies/demos/reproduce.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/demos/runs}
harness eval --config leaderboard/studies/demos/run.yaml --data-dir "$DATA" --out "$RUNS"
harness leaderboard "$RUNS" --out leaderboard/studies/demos --k 16
