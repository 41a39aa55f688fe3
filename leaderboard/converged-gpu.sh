#!/usr/bin/env bash
# The converged fine-tuning grid on one GPU: leaderboard/run-files/gpu/converged*.yaml (6 tasks x 5 seeds x
# {full, prompt-ft, lora, LP-FT, scratch}, CUDA budget, each task's whole test split), PROCESSES harness processes
# sharing one run folder (each cell is locked, so they split the grid) and one GPU.
#   bash leaderboard/converged-gpu.sh [--dry-run] [DATA_DIR] [RUN_DIR]
# --dry-run lists the cells still to compute and estimates the time: every cell at its whole budget (learning
# rates x max steps; early stopping only shortens it), at SECONDS_PER_STEP, over PROCESSES processes.
# SECONDS_PER_STEP defaults to the CPU's measured median (2.8 s for full: train_step_seconds / train_steps of the
# published k = 16 cells, 2-core CPU, fp32) divided by GPU_SPEEDUP, a stated assumption (default 60: no GPU step
# of this model has been measured in this project yet) -- replace both with the first measured GPU step time.
# Through this workplace's device tool (64 MiB a call, less than the checkout and the model): leaderboard/gpu-lease/.
set -euo pipefail
DRY=""
if [[ ${1:-} == --dry-run ]]; then DRY=--dry-run; shift; fi
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-converged-gpu}
PROCESSES=${PROCESSES:-6}
GPU_SPEEDUP=${GPU_SPEEDUP:-60}
SECONDS_PER_STEP=${SECONDS_PER_STEP:-$(python -c "print(2.8 / $GPU_SPEEDUP)")}
FILES=(leaderboard/run-files/gpu/converged.yaml leaderboard/run-files/gpu/converged-lp-ft.yaml)
if [[ -n $DRY ]]; then
  planned=0
  for file in "${FILES[@]}"; do
    out=$(harness eval --config "$file" --data-dir "$DATA" --out "$RUNS" --dry-run)
    echo "$out" | grep "^ planned"
    planned=$((planned + $(echo "$out" | grep -c "^ planned" || true)))
  done
  # the CUDA budget: 4 learning rates x up to 1000 steps per cell
  python - "$planned" "$SECONDS_PER_STEP" "$PROCESSES" <<'PY'
import sys
cells, per_step, processes = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
steps = cells * 4 * 1000
print(f"{cells} cells to compute; at most {steps:,} optimizer steps at {per_step:.3f} s each over {processes} "
      f"processes: at most {steps * per_step / processes / 60:.0f} min (early stopping shortens it)")
PY
  exit 0
fi
for file in "${FILES[@]}"; do
  for i in $(seq "$PROCESSES"); do
    harness eval --config "$file" --data-dir "$DATA" --out "$RUNS" &
  done
  wait
done
harness leaderboard "$RUNS" --out leaderboard/converged --k 16
