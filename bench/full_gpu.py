"""GPU benchmark (not a test; needs CUDA): the 25 `full` cells of the main table (sst2, subj, trec, agnews,
bbc_news × seeds 13, 21, 42, 87, 100 at k = 16) at the CUDA budget (lr grid to 1e-4, up to 1000 steps, early
stopping), packed onto one GPU by running several `harness eval` processes on one run folder (each cell is
locked, so the processes split the cells between them). Target: ≤ 10 minutes on one H100.

    python bench/full_gpu.py --data-dir ../shared/data --processes 1,4   # writes its section of bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_section

from harness.results import read_run_folder

MARK = "## full at the CUDA budget on one GPU"
TASKS = "sst2,subj,trec,agnews,bbc_news"


def packed_run(processes: int, data_dir: str, limit: str) -> tuple[float, int, int]:
    """Wall seconds for every cell, cells finished, cells failed."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "harness", "eval", "--tasks", TASKS, "--regimes", "full", "--k", "16",
                   "--seeds", "13,21,42,87,100", "--limit", limit, "--device-defaults", "cuda", "--data-dir", data_dir,
                   "--out", out]
        start = time.perf_counter()
        running = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(processes)]
        for process in running:
            process.wait()
        seconds = time.perf_counter() - start
        results = read_run_folder(Path(out))
    return seconds, sum(r.ok for r in results), sum(not r.ok for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--processes", default="1,4")
    parser.add_argument("--limit", default="1000")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/full_gpu.py needs a CUDA device")
    device = torch.cuda.get_device_name(0)
    lines = [MARK + " (`python bench/full_gpu.py`)", "",
             f"Device: {device}; torch {torch.__version__}; bf16 autocast; {TASKS}, k = 16, 5 seeds, "
             f"--limit {args.limit}; {time.strftime('%Y-%m-%d')}.", "",
             "| processes on the GPU | wall s | cells ok | cells failed | target ≤ 600 s |", "|---|---|---|---|---|"]
    for processes in (int(p) for p in args.processes.split(",")):
        seconds, ok, failed = packed_run(processes, args.data_dir, args.limit)
        lines.append(f"| {processes} | {seconds:.0f} | {ok} | {failed} | {'met' if seconds <= 600 else 'missed'} |")
        print(lines[-1], flush=True)
    write_section(MARK, lines + [""])


if __name__ == "__main__":
    main()
