"""Demo-set benchmark (not a test): what S demo sets cost against S times one set, and against the issue's
model S x (prefix + zero-shot pass).

    python bench/demo_sets.py --data-dir ../shared/data      # writes its section of bench/RESULTS.md

sst2, template `lmbff`, k = 16 per class, seed 13, m = 4 demos per class, a fixed test subset. Every timing
runs the regime itself with a fresh score cache, so nothing is shared between measurements.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from results_file import write_section

from harness.cells import fit_data
from harness.models import load_model
from harness.prompts import load_template, render_prefix
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.prompting import FewShotSettings, PromptingSettings
from harness.regimes.protocol import Shared
from harness.sampling import KShotDraw, draw_demo_sets, draw_kshot, select_test_subset
from harness.tasks import load_examples, load_task
from harness.types import Cell

MARK = "## Demo sets"


def timed_run(lm, regime, template, data, settings):
    shared = Shared(FeatureStore(lm.model, lm.tokenizer))
    start = time.perf_counter()
    run = regime.run(lm, shared, template, data, settings, False)
    return time.perf_counter() - start, run


def prefix_seconds(lm, template, demo_set, repeats=3) -> float:
    """One forward over the demo prefix alone, as the scorer encodes it once per demo set (logits of the last
    position only)."""
    ids = lm.tokenizer(render_prefix(template, demo_set), return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        lm.model(ids, use_cache=True, logits_to_keep=1)
        start = time.perf_counter()
        for _ in range(repeats):
            lm.model(ids, use_cache=True, logits_to_keep=1)
    return (time.perf_counter() - start) / repeats, ids.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--sets", default="1,2,4,8")
    args = parser.parse_args()

    lm = load_model("smollm2-135m")
    task = load_task("sst2")
    template = load_template(task, "lmbff")
    test = select_test_subset(load_examples(task, "test", args.data_dir), args.n)
    train = draw_kshot(load_examples(task, "train", args.data_dir), 16, 13, task.label_names).train
    few = Cell("sst2", "lmbff", "few-shot", 16, 13)
    zero = Cell("sst2", "lmbff", "zero-shot", 0, None)
    few_data = fit_data(KShotDraw(train, ()), test, task, few)
    zero_data = fit_data(KShotDraw((), ()), test, task, zero)

    timed_run(lm, get_regime("zero-shot"), template, fit_data(KShotDraw((), ()), test[:32], task, zero),
              PromptingSettings())  # warm-up: the first forwards of a process are slower
    zero_s, _ = timed_run(lm, get_regime("zero-shot"), template, zero_data, PromptingSettings())
    prefix_s, prefix_tokens = prefix_seconds(lm, template, draw_demo_sets(train, args.m, 1, 13, 2)[0])
    rows = []
    for sets in (int(s) for s in args.sets.split(",")):
        wall, run = timed_run(lm, get_regime("few-shot"), template, few_data,
                              FewShotSettings(demos=args.m, demo_sets=sets))
        rows.append({"sets": sets, "wall": wall, "tokens": run.details["tokens_processed"],
                     "forwards": run.details["forward_passes"]})
        print(rows[-1], flush=True)
    one = rows[0]["wall"] if rows[0]["sets"] == 1 else None
    lines = [
        MARK + " (`python bench/demo_sets.py --data-dir ../shared/data`)", "",
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; smollm2-135m (fp32); sst2 `lmbff`, {args.n} test "
        f"inputs, k = 16, seed 13, m = {args.m} demos per class (a {prefix_tokens}-token prefix); "
        f"{time.strftime('%Y-%m-%d')}.", "",
        f"Zero-shot pass over the test inputs: **{zero_s:.2f} s**; one forward over a demo prefix alone: "
        f"**{prefix_s:.3f} s**. Model: S × (prefix + zero-shot pass).", "",
        "| S demo sets | wall s | tokens run | forwards | ÷ (S × one set) | ÷ (S × (prefix + zero-shot pass)) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sets']} | {r['wall']:.2f} | {r['tokens']} | {r['forwards']} | "
            f"{r['wall'] / (r['sets'] * one):.2f} | " if one else f"| {r['sets']} | {r['wall']:.2f} | — | ")
        lines[-1] += f"{r['wall'] / (r['sets'] * (prefix_s + zero_s)):.2f} |"
    lines += ["", "A test prompt after demos attends to the prefix's cached keys and values, so one set costs "
              "somewhat more than a zero-shot pass plus the prefix; the first ratio shows whether S sets cost "
              "more than S single-set runs (the ensemble adds only an average).", ""]
    write_section(MARK, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
