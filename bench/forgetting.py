"""Forgetting's cost (a benchmark, not a test): what `--forgetting` adds to a cell, against zero-shot passes.

    python bench/forgetting.py [--data-dir ../shared/data] [--tasks sst2,trec] [--limit 200]

With the embedded model (one torch thread): the wall time of one zero-shot pass over each watched task's test
subset, of the held-out text pass (bbc_news test bodies, ~30k tokens), and of a whole measurement for an adapted
model (the untouched model's scores are cached per run, so a cell pays the text pass and one zero-shot pass per
watched task). Target (issue "Transfer diagnostics"): ≤ one zero-shot pass per task.
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import write_section

from harness.forgetting import _correct, _text_nll, forgetting_probes
from harness.models import load_model

MARK = "## Forgetting measurement cost"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--tasks", default="sst2,trec")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_model("smollm2-135m")
    probes = forgetting_probes(args.tasks.split(","), args.limit, args.data_dir)
    passes = {}
    for task in probes.tasks:
        started = time.perf_counter()
        _correct(lm.model, lm, task, probes.batch_size, False)
        passes[task.name] = time.perf_counter() - started
    started = time.perf_counter()
    _, tokens = _text_nll(lm.model, lm, probes.texts, probes.batch_size, False)
    text = time.perf_counter() - started
    probes.score_untouched(lm)
    started = time.perf_counter()
    probes.measure(lm.model, lm, source_task="none")  # what one adapted cell pays (the reference is cached)
    measure = time.perf_counter() - started
    zero_shot = sum(passes.values())
    lines = [MARK, "",
             f"`python bench/forgetting.py --tasks {args.tasks} --limit {args.limit}`: embedded SmolLM2, one torch "
             f"thread, {torch.get_num_threads()} thread(s) in use; held-out text: {len(probes.texts)} bbc_news test "
             f"bodies, {sum(tokens)} tokens.", "",
             "| what | wall (s) |", "|---|---|",
             *[f"| zero-shot pass, {name} ({args.limit} examples) | {seconds:.1f} |" for name, seconds in passes.items()],
             f"| held-out text pass | {text:.1f} |",
             f"| one cell's whole measurement | {measure:.1f} |", "",
             f"A cell's measurement costs {measure / zero_shot:.2f}× the zero-shot passes over its watched tasks "
             f"(one pass per task, as targeted, plus the text pass = {text / zero_shot:.2f}× of them)."]
    write_section(MARK, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
