#!/usr/bin/env bash
# The CPU convergence pilot, cell by cell so that every regime gets seeds early (resumable: finished cells are
# skipped). One torch thread per process; LANES processes side by side (default 1: the other core stays free).
#   bash leaderboard/studies/convergence/reproduce.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/convergence/runs-cpu}
P=leaderboard/studies/convergence
export OMP_NUM_THREADS=1
for seed in 13 21 42; do
  for task in sst2 subj; do
    for regime in full prompt-ft lora; do
      harness eval --config $P/pilot.yaml --tasks $task --regimes $regime --seeds $seed --data-dir "$DATA" --out "$RUNS"
    done
    harness eval --config $P/pilot.yaml --tasks $task --regimes full --head-init probe --seeds $seed \
      --data-dir "$DATA" --out "$RUNS"
  done
done
# the budget the report chooses (48 steps), checked: six cells again with it as their own schedule
check() { harness eval --config $P/pilot.yaml --tasks $1 --regimes $2 --seeds $3 --data-dir "$DATA" \
  --out "$RUNS-48" --$2-max-steps 48; }
check sst2 prompt-ft 13; check sst2 full 13; check subj prompt-ft 21; check subj lora 21; check sst2 lora 42
check subj full 42
python $P/report.py "$RUNS" leaderboard/runs-0.4-cpu "$RUNS-48" > $P/README.md
