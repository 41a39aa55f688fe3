#!/usr/bin/env bash
# Archived: harness 0.1 cells of the first published leaderboard (superseded by leaderboard/republish-cpu.sh).
# Reproduce the published leaderboard: every cell, then the tables.
#   bash leaderboard/archive/harness-0.1/reproduce.sh [DATA_DIR] [RUN_DIR] [JOBS]
# DATA_DIR: the offline mirror (default ../shared/data); RUN_DIR: where cells go (default leaderboard/archive/harness-0.1/runs);
# JOBS: tasks run side by side (default 1; on a GPU 5 is fine). Cells are resumable: rerun to continue.
# The environment variables below shrink the run for a smoke test; the published run uses the defaults.
# The committed cells were computed by harness 0.1, which hashed the options as typed; harness 0.2 hashes the
# resolved settings with the device and dtype, so it refuses to resume them: give a fresh RUN_DIR.
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/archive/harness-0.1/runs}
JOBS=${3:-1}
TASKS=${TASKS:-sst2 agnews trec subj bbc_news}
SEEDS=${SEEDS:-13,21,42,87,100}
CURVE_SEEDS=${CURVE_SEEDS:-13,21,42}
CURVE_KS=${CURVE_KS:-2,4,8,16,32}
K=${K:-16}
LIMIT=${LIMIT:-1000}
# full fine-tuning: a two-rate grid and 60 steps with the CUDA defaults otherwise (batch 16, dev every 20 steps,
# patience 3) on any device; the CUDA default grid has three rates and 200 steps
FULL=(--full-learning-rates 1e-5,3e-5 --full-max-steps "${FULL_STEPS:-60}" --full-defaults cuda)
COMMON=(--limit "$LIMIT" --data-dir "$DATA" --out "$RUNS")

declare -A FIRST=([sst2]=lmbff [subj]=lmbff [trec]=answer_type [agnews]=topic [bbc_news]=short)

mkdir -p "$RUNS/logs"
python -c "from harness.models import ensure_embedded_converted; ensure_embedded_converted()"  # convert once

chain() {  # one task: the main table, then (sst2, agnews) the learning curve
  local task=$1
  harness eval --tasks "$task" --regimes zero-shot,few-shot --templates all --k "$K" --seeds "$SEEDS" "${COMMON[@]}"
  harness eval --tasks "$task" --regimes head,full --templates "${FIRST[$task]}" --k "$K" --seeds "$SEEDS" \
    "${FULL[@]}" "${COMMON[@]}"
  if [[ $task == sst2 || $task == agnews ]]; then
    harness eval --tasks "$task" --regimes zero-shot,few-shot --templates all --k "$CURVE_KS" --seeds "$CURVE_SEEDS" \
      "${COMMON[@]}"
    harness eval --tasks "$task" --regimes head,full --templates "${FIRST[$task]}" --k "$CURVE_KS" \
      --seeds "$CURVE_SEEDS" "${FULL[@]}" "${COMMON[@]}"
  fi
}

pids=()
for task in $TASKS; do
  chain "$task" > "$RUNS/logs/$task.log" 2>&1 &
  pids+=($!)
  while (( $(jobs -rp | wc -l) >= JOBS )); do sleep 2; done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || { status=1; echo "a task chain failed: see $RUNS/logs" >&2; }; done
notes=(); [[ -f leaderboard/archive/harness-0.1/NOTES.md ]] && notes=(--notes leaderboard/archive/harness-0.1/NOTES.md)
harness leaderboard "$RUNS" --out "${LEADERBOARD_OUT:-leaderboard/archive/harness-0.1}" "${notes[@]}" || status=1
exit $status
