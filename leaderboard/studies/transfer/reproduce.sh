#!/usr/bin/env bash
# Transfer diagnostics (issue "Transfer diagnostics"): domain shift sst2 → mr and agnews → bbc_news, and forgetting,
# at k = 16 per class, 5 seeds, 200 test examples per task (each source, target and watched task), one template per
# task (sst2/mr lmbff, agnews topic, bbc_news short): zero-shot and few-shot, plain and dev-prior calibrated, head,
# full and lora at the CPU budget (full: lr 4e-5, 24 steps of 8; lora: lr 1e-3, 24 steps).
#   bash leaderboard/studies/transfer/reproduce.sh [DATA_DIR] [RUN_DIR]
# Two processes (one torch thread each) on 2 CPU cores, about 2 hours: the sst2 → mr pair and the agnews → bbc_news
# pair. The target tasks are also trained on their own k (the table's "target-trained" column): mr with every
# regime, bbc_news with zero-shot, few-shot and head (its full and lora cells did not fit the session's CPU time).
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/studies/transfer/runs-cpu}
T=leaderboard/studies/transfer
COMMON=(--data-dir "$DATA" --out "$RUNS")
export OMP_NUM_THREADS=1
{
  harness eval --config $T/sst2-to-mr.yaml "${COMMON[@]}"
  harness eval --config $T/mr.yaml "${COMMON[@]}"
} &
{
  harness eval --config $T/agnews-to-bbc_news.yaml "${COMMON[@]}"
  harness eval --config $T/bbc_news.yaml "${COMMON[@]}"
} &
wait
harness leaderboard "$RUNS" --out leaderboard/studies/transfer --k 16 --notes leaderboard/studies/transfer/NOTES.md
