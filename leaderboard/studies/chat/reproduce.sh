#!/usr/bin/env bash
# Chat-formatted prompting on sst2, agnews and trec (resumable), then its page beside the published plain cells.
#   bash leaderboard/studies/chat/reproduce.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/chat/runs-cpu}
export OMP_NUM_THREADS=1
for task in sst2:lmbff agnews:topic trec:answer_type; do
  harness eval --config leaderboard/studies/chat/run.yaml --tasks "${task%%:*}" --templates "${task##*:}" \
    --data-dir "$DATA" --out "$RUNS"
done
harness leaderboard leaderboard/runs-0.4-cpu "$RUNS" --out leaderboard/studies/chat --k 16 --group-by model \
  --notes leaderboard/studies/chat/NOTES.md
