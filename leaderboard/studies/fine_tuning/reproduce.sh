#!/usr/bin/env bash
# Fair fine-tuning, after (issue "Fair fine-tuning"): head (the standard probe, every template), full (own head
# learning rate; zero and LP-FT probe init) and prompt-ft at k = 16 per class, 5 seeds, 1000 test examples (the
# published leaderboard's subset; trec has 500, bbc_news 418 after deduplication).
#   bash leaderboard/studies/fine_tuning/reproduce.sh cpu [DATA_DIR] [RUN_DIR]   # what ran here: 2 CPU cores
#   bash leaderboard/studies/fine_tuning/reproduce.sh cuda [DATA_DIR] [RUN_DIR]  # the real budget, on a GPU
# "cpu": full and prompt-ft at the CPU budget (24 steps, lr 4e-5) on the three short-input tasks, each task's
# first template (as the published leaderboard's full); LP-FT (full --head-init probe) on sst2 only. About 2.5
# hours on 2 cores (one torch thread per process, two processes).
# "cuda": full and prompt-ft at the CUDA budget (lr 1e-5..1e-4, up to 1000 steps, dev every 10, patience 10) on all
# four tasks; several processes share one run folder (each cell is locked), which packs cells onto one GPU.
set -euo pipefail
MODE=${1:?cpu or cuda}
DATA=${2:-../shared/data}
RUNS=${3:-leaderboard/studies/fine_tuning/runs-$MODE}
F=leaderboard/studies/fine_tuning
COMMON=(--data-dir "$DATA" --out "$RUNS")
if [ "$MODE" = cpu ]; then
  harness eval --config $F/cpu-head.yaml "${COMMON[@]}"
  harness eval --config $F/cpu-full-prompt-ft.yaml --tasks sst2,subj --templates lmbff "${COMMON[@]}"
  harness eval --config $F/cpu-full-prompt-ft.yaml --tasks trec --templates answer_type "${COMMON[@]}"
  harness eval --config $F/cpu-lp-ft.yaml "${COMMON[@]}"
else
  PROCESSES=${PROCESSES:-4}
  for i in $(seq "$PROCESSES"); do
    harness eval --config $F/cuda-full-prompt-ft.yaml "${COMMON[@]}" &
  done
  wait
  harness eval --config $F/cuda-lp-ft.yaml "${COMMON[@]}"
fi
if [ "$MODE" = cpu ]; then
  harness leaderboard "$RUNS" --out leaderboard/studies/fine_tuning --k 16 --notes leaderboard/studies/fine_tuning/NOTES.md
else
  harness leaderboard "$RUNS" --out leaderboard/studies/fine_tuning/cuda --k 16
fi
