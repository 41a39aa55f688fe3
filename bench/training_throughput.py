"""Training throughput (not a test): `full` (padded and packed rows) and `prompt-ft` steps on sst2, k = 16 per
class (32 training inputs, batches of 8), one thread: useful tokens per second, FLOP/s on useful tokens
(6 x block parameters x tokens), as a fraction of this machine's MKL GEMM rate at the step's shapes, and where the
step's time goes.

    python bench/training_throughput.py --data-dir ../shared/data     # writes its section of bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import write_section

from harness.backbone import block_parameters
from harness.cells import draw_for, fit_data
from harness.models import load_model
from harness.prompts import load_template
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.full import FullSettings
from harness.regimes.prompt_ft import PromptFtSettings
from harness.regimes.protocol import Shared
from harness.tasks import load_examples, load_task
from harness.types import Cell

MARK = "## Training throughput"


def run(lm, regime: str, settings, data_dir: str):
    task = load_task("sst2")
    cell = Cell("sst2", "lmbff", regime, 16, 13)
    draw = draw_for(cell, get_regime(regime), settings, 1, load_examples(task, "train", data_dir), [], task)
    data = fit_data(draw, load_examples(task, "test", data_dir)[:16], task, cell)
    return get_regime(regime).run(lm, Shared(FeatureStore(lm.model, lm.tokenizer)), load_template(task, "lmbff"), data,
                                  settings, False)


def gemm_rate(rows: int, repeats: int = 20) -> float:
    """MKL's fp32 GFLOP/s for the model's MLP shape (rows x 576 @ 576 x 1536), one thread."""
    x, w = torch.randn(rows, 576), torch.randn(1536, 576)
    torch.nn.functional.linear(x, w)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - start)
    return 2 * rows * 576 * 1536 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_model("smollm2-135m")
    blocks = block_parameters(lm.model)
    common = {"max_steps": args.steps, "eval_every": args.steps}
    cases = {"full, padded rows": ("full", FullSettings(**common)),
             "full, packed rows (--pack)": ("full", FullSettings(**common, pack=True)),
             "prompt-ft (padded rows)": ("prompt-ft", PromptFtSettings(**common))}
    rows = []
    for name, (regime, settings) in cases.items():
        result = run(lm, regime, settings, args.data_dir)
        seconds = result.details["train_step_seconds"]
        tokens = result.cost.train_tokens
        per_step = tokens / result.cost.train_steps
        flops = 6 * blocks * tokens / seconds / 1e9
        rows.append((name, seconds / result.cost.train_steps, tokens / seconds, flops, per_step,
                     result.details.get("padding_fraction", 0.0)))
        print(rows[-1], flush=True)
    rate = gemm_rate(int(round(sum(r[4] for r in rows) / len(rows))))
    lines = [MARK + " (`python bench/training_throughput.py --data-dir ../shared/data`)", "",
             f"{torch.backends.cpu.get_cpu_capability()} CPU (this session's Intel Xeon), torch {torch.__version__}, "
             f"1 thread; sst2, template lmbff, k = 16, seed 13 (32 training inputs), batches of 8, {args.steps} steps, "
             f"one learning rate; FLOP/s on useful (non-pad) tokens = 6 x {blocks / 1e6:.0f} M block parameters x "
             f"tokens / time in training steps; MKL's GEMM rate at the MLP shape with that many rows: {rate:.0f} "
             f"GFLOP/s; {time.strftime('%Y-%m-%d')}. A one-thread study ran on the other core.", "",
             "| case | s / step | useful tokens / s | GFLOP/s on useful tokens | ÷ GEMM rate | tokens / step | padding |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s:.2f} | {t:.0f} | {f:.0f} | {f / rate:.2f} | {p:.0f} | {100 * pad:.0f} % |"
              for n, s, t, f, p, pad in rows]
    write_section(MARK, lines + [""])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
