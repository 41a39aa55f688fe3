#!/usr/bin/env bash
# Calibrated prompting, before and after (issue "Fair prompting"): zero-shot and few-shot, each plain and with
# the two label-free calibrations, on sst2, subj, trec and bbc_news at k = 16 per class, 5 seeds, 500 test
# examples, every template (each seed's dev set picks one). CPU fp32; about an hour on 2 cores.
#   bash leaderboard/studies/calibration/reproduce.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/calibration/runs}
harness eval --config leaderboard/studies/calibration/run.yaml --data-dir "$DATA" --out "$RUNS"
harness leaderboard "$RUNS" --out leaderboard/studies/calibration --k 16 --notes leaderboard/studies/calibration/NOTES.md
