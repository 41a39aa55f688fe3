"""LoRA benchmark (not a test): time per training step and peak memory of `lora` against `full` on the same
batches (bbc_news, template `short`, k = 16, seed 13). Targets: ≤ 1.15× full's time per step; less peak memory.

    python bench/lora.py            # writes its section of bench/RESULTS.md

Peak memory is each fit's own process (model load included): peak RSS on a CPU, peak allocated CUDA memory on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from finetuning import run_regime
from results_file import write_section

from harness.models import load_model
from harness.regimes.full import FullSettings
from harness.regimes.lora import LoraSettings

MARK = "## LoRA against full"


def child(regime: str, steps: int) -> None:
    """One fit in this process; prints seconds per step and the process's peak memory."""
    lm = load_model("smollm2-135m")
    common = {"max_steps": steps, "eval_every": steps}
    cfg = LoraSettings(**common) if regime == "lora" else FullSettings(**common)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    fit = run_regime(lm, regime, cfg)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"seconds_per_step": fit.details["train_step_seconds"] / fit.cost.train_steps, "peak_bytes": peak,
                      "trainable": fit.cost.trainable_parameters, "tokens": fit.cost.train_tokens}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--child", choices=["full", "lora"])
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)
    runs = {}
    for regime in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, "--child", regime, "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        runs[regime] = json.loads(out.stdout.strip().splitlines()[-1])
        print(regime, runs[regime], flush=True)
    ratio = runs["lora"]["seconds_per_step"] / runs["full"]["seconds_per_step"]
    memory = runs["lora"]["peak_bytes"] / runs["full"]["peak_bytes"]
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = [
        MARK + " (`python bench/lora.py`)", "",
        f"{where}, torch with {torch.get_num_threads()} thread(s); bbc_news (version 2), template `short`, k = 16, seed "
        f"13; {args.steps} steps of 8, the same batches for both; LoRA rank 8, alpha 16, every linear projection; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        "| measure | full | lora | lora ÷ full | target | met? |", "|---|---|---|---|---|---|",
        f"| seconds per training step | {runs['full']['seconds_per_step']:.2f} | {runs['lora']['seconds_per_step']:.2f} | "
        f"**{ratio:.2f}** | ≤ 1.15 | {'met' if ratio <= 1.15 else 'missed'} |",
        f"| peak memory of the process ({'CUDA allocated' if torch.cuda.is_available() else 'RSS'}) | "
        f"{runs['full']['peak_bytes'] / 2**30:.2f} GiB | {runs['lora']['peak_bytes'] / 2**30:.2f} GiB | **{memory:.2f}** "
        f"| < 1 | {'met' if memory < 1 else 'missed'} |",
        f"| trainable parameters | {runs['full']['trainable']:,} | {runs['lora']['trainable']:,} | "
        f"{runs['lora']['trainable'] / runs['full']['trainable']:.3f} | — | — |", "",
    ]
    write_section(MARK, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
