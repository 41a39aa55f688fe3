#!/usr/bin/env bash
# Lease call 1 (carry .gpu1; see prepare.sh): install the carried wheels into /tmp/site, keep the GGUF's first part
# in /tmp/gguf, and check that harness imports (seconds).
set -x
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -V; nproc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .gpu1/wheels/*.whl || exit 2
mkdir -p /tmp/gguf && cp .gpu1/part-a /tmp/gguf/part-a
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, transformers, peft, harness.cli; print(torch.__version__, transformers.__version__,
peft.__version__, torch.cuda.is_available())"
python3 -m harness eval --help > /dev/null && echo "harness ready"
