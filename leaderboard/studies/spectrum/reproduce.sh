#!/usr/bin/env bash
# The CPU study of issue "From prompt to weights" (resumable: finished cells and sequence runs are skipped).
# Two one-thread lanes: a) the spectrum, then the mitigations; b) the mitigations, then the continual sequence (the
# lanes share the mitigation cells: each cell is computed under a lock, and a lane skips a cell the other holds).
# The chat-vs-plain part is leaderboard/studies/chat (done).
#   bash leaderboard/studies/spectrum/reproduce.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/spectrum/runs-cpu}
P=leaderboard/studies/spectrum
export OMP_NUM_THREADS=1
run() { harness eval --config "$P/$1.yaml" --data-dir "$DATA" --out "$RUNS"; }
(run spectrum; run mitigations) & (run mitigations; run continual) & wait
harness leaderboard "$RUNS" --out "$P/tables" --k 16
