#!/usr/bin/env bash
# The converged fine-tuning grid on one GPU: leaderboard/run-files/gpu/converged*.yaml (6 tasks, every template: 11
# task-templates x 5 seeds x {full, prompt-ft, lora, LP-FT, scratch}, CUDA budget, each task's whole test split),
# PROCESSES harness processes sharing one run folder (each cell is locked, so they split the grid) and one GPU.
#   bash leaderboard/converged-gpu.sh [--dry-run] [DATA_DIR] [RUN_DIR]
# --dry-run lists the cells still to compute (planned in an empty folder, less those with a result in RUN_DIR, so it
# also works on a machine without CUDA) and estimates the time at SECONDS_PER_STEP per optimizer step in each of
# PROCESSES processes. The default is measured (2026-12-04, one H200, 8 processes of one thread, bf16): `full` on
# sst2 trained at 5.2-6.1 steps/s in each process, and its finished cell took 238 s for 1200 steps with its dev
# checks, 0.2 s a step (dev every 50 steps then; every 10 now adds a little). The bound counts every cell at its
# whole budget (4 learning rates x 1000 steps); early stopping shortens it (that cell stopped each rate at 300).
# Through this workplace's device tool (64 MiB a call, less than the checkout and the model): leaderboard/gpu-lease/.
set -euo pipefail
DRY=""
if [[ ${1:-} == --dry-run ]]; then DRY=--dry-run; shift; fi
DATA=${1:-../shared/data}
RUNS=${2:-leaderboard/runs-converged-gpu}
PROCESSES=${PROCESSES:-8}
SECONDS_PER_STEP=${SECONDS_PER_STEP:-0.2}
FILES=(leaderboard/run-files/gpu/converged.yaml leaderboard/run-files/gpu/converged-lp-ft.yaml)
if [[ -n $DRY ]]; then
  empty=$(mktemp -d)
  trap 'rm -rf "$empty"' EXIT
  planned=0
  for file in "${FILES[@]}"; do
    cells=$(harness eval --config "$file" --data-dir "$DATA" --out "$empty" --dry-run | awk '/^ planned/ {print $2}')
    for cell in $cells; do
      if ! compgen -G "$RUNS/*/$cell.json" > /dev/null; then echo " planned  $cell"; planned=$((planned + 1)); fi
    done
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
