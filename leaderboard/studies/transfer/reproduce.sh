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
COMMON=(--k 16 --seeds 13,21,42,87,100 --limit 200 --data-dir "$DATA" --out "$RUNS" --calibration none,dev-prior)
REGIMES=(--regimes zero-shot,few-shot,head,full,lora)
export OMP_NUM_THREADS=1
{
  harness eval --tasks sst2 --templates lmbff --eval-tasks mr --forgetting agnews,trec "${REGIMES[@]}" "${COMMON[@]}"
  harness eval --tasks mr --templates lmbff "${REGIMES[@]}" "${COMMON[@]}"  # the target trained on its own k
} &
{
  harness eval --tasks agnews --templates topic --eval-tasks bbc_news --forgetting sst2,trec "${REGIMES[@]}" "${COMMON[@]}"
  harness eval --tasks bbc_news --templates short --regimes zero-shot,few-shot,head "${COMMON[@]}"
} &
wait
harness leaderboard "$RUNS" --out leaderboard/studies/transfer --k 16 --notes leaderboard/studies/transfer/NOTES.md
