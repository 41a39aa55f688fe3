"""Ray executor benchmark (not a test): the same cells with --executor local and --executor ray, on this machine.

Targets (2 CPU cores): the Ray path adds ≤ 15 s of fixed start-up and ≤ 5 % per cell over local. Both runs use
the same torch threads (local: all cores; Ray: one worker asking for all of them), so the per-cell ratio is the
executor's own cost. Run it inside a loopback-only network namespace (Ray listens on every interface):

    unshare -n sh -c 'ip link set lo up && python bench/ray_overhead.py [--data-dir ../shared/data]'

Cells: sst2, template lmbff, 200 test examples, k = 16, seeds 13 and 21, regimes head and full (CPU budget): 4 cells.
Fixed start-up = (Ray wall − its cells' own wall times) − (local wall − its cells' own wall times): Ray's start,
the worker's start and its model load, beyond the local run's model load. Per cell = Σ Ray cell walls ÷ Σ local.
On a lent GPU the packing target (cells with --gpus-per-cell 0.2 against one at a time) is measured by
`harness eval --executor ray --gpus-per-cell 0.2` against `--gpus-per-cell 1` on the same cells (not run here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from results_file import write_section

from harness.runner import EvalConfig, run_eval

MARK = "## Ray executor against local"


def run(executor: str, out: Path, args: argparse.Namespace, **extra) -> tuple[float, float, int]:
    """(wall seconds of run_eval, Σ of the cells' own wall times, cells computed)."""
    config = EvalConfig(tasks=["sst2"], regimes=args.regimes.split(","), k=[16], seeds=[13, 21], templates="lmbff",
                        limit=args.limit, data_dir=args.data_dir, out=out, executor=executor, **extra)
    started = time.perf_counter()
    report = run_eval(config)
    wall = time.perf_counter() - started
    cells = [r for r in report.results if r.ok]
    return wall, sum(r.wall_time_s for r in cells), report.computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--regimes", default="head,full")
    parser.add_argument("--repeats", type=int, default=2, help="local/ray pairs, interleaved")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="CPUs for both executors: local torch threads, and the one Ray worker's request")
    args = parser.parse_args()
    import ray
    import torch

    cores = args.cores
    torch.set_num_threads(cores)
    rows, pairs = [], []
    for repeat in range(args.repeats):
        for executor in ("local", "ray"):
            out = Path(tempfile.mkdtemp(prefix=f"ray-bench-{executor}-"))
            try:
                if executor == "ray":
                    started = time.perf_counter()
                    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
                    init = time.perf_counter() - started
                    wall, cells_wall, n = run(executor, out, args, cpus_per_cell=float(cores))
                    ray.shutdown()
                    wall += init
                else:
                    wall, cells_wall, n = run(executor, out, args)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            rows.append({"repeat": repeat, "executor": executor, "wall_s": round(wall, 2),
                         "cells_wall_s": round(cells_wall, 2), "cells": n})
            print(json.dumps(rows[-1]), flush=True)
        local, remote = rows[-2], rows[-1]
        pairs.append({"startup_s": (remote["wall_s"] - remote["cells_wall_s"]) - (local["wall_s"] - local["cells_wall_s"]),
                      "per_cell": remote["cells_wall_s"] / local["cells_wall_s"]})
    lines = [MARK, "",
             f"`unshare -n sh -c 'ip link set lo up && python bench/ray_overhead.py'`: sst2 (lmbff, {args.limit} test "
             f"examples, k = 16, seeds 13 and 21), regimes {args.regimes}, {cores} CPU cores, torch "
             f"{torch.__version__}, Ray {ray.__version__}; local uses {torch.get_num_threads()} torch threads, the one "
             f"Ray worker asks for {cores} CPUs and sets as many threads. Pairs interleaved (local, Ray, local, Ray).", "",
             "| pair | local wall (s) | local cells (s) | Ray wall (s) | Ray cells (s) | extra start-up (s) | per cell, Ray ÷ local |",
             "|---|---|---|---|---|---|---|"]
    for i, pair in enumerate(pairs):
        local, remote = rows[2 * i], rows[2 * i + 1]
        lines.append(f"| {i + 1} | {local['wall_s']:.1f} | {local['cells_wall_s']:.1f} | {remote['wall_s']:.1f} | "
                     f"{remote['cells_wall_s']:.1f} | {pair['startup_s']:.1f} | {pair['per_cell']:.3f} |")
    worst_startup = max(p["startup_s"] for p in pairs)
    worst_cell = max(p["per_cell"] for p in pairs)
    lines += ["", f"Targets: start-up ≤ 15 s — worst pair {worst_startup:.1f} s "
                  f"({'met' if worst_startup <= 15 else 'missed'}); per cell ≤ 1.05× — worst pair {worst_cell:.3f}× "
                  f"({'met' if worst_cell <= 1.05 else 'missed'}).",
              "The GPU packing target (main-table cells with --gpus-per-cell 0.2 ≥ 3× faster than one at a time on the "
              "same GPU) needs a lent GPU: not measured in this task (no device was drawn)."]
    write_section(MARK, lines)


if __name__ == "__main__":
    main()
