"""Prompting benchmark (not a test): shortcuts vs naive scoring, achieved FLOP/s, the default run end to end.

    python bench/prompting.py --data-dir ../shared/data        # writes its section of bench/RESULTS.md

All ratios are measured in one run on one machine. The naive few-shot baseline (one forward per prompt and
answer, each repeating all 32 demos) is timed on a subset and compared per example.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from results_file import write_section

from harness.models import load_model
from harness.prompts import answers, load_template, render_input, render_prefix
from harness.predict import fit_demos
from harness.sampling import draw_kshot, select_test_subset
from harness.scoring import ScoreRequest, ScoreStats, score_naive, score_requests
from harness.tasks import load_examples, load_task

HERE = Path(__file__).resolve().parent


def matmul_gflops(n: int = 2048, repeats: int = 20) -> float:
    """fp32 GEMM throughput of this machine, the reference for the forward passes."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def requests_for(template, test, demos, lm):
    kept = fit_demos(lm.tokenizer, lm.max_length, template, test, demos, answers(template))
    return [ScoreRequest(render_prefix(template, d), render_input(template, e), tuple(answers(template)))
            for e, d in zip(test, kept)]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def cli_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--naive-few-shot-n", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()

    lm = load_model("smollm2-135m")
    task = load_task("sst2")
    template = load_template(task, "lmbff")
    test = select_test_subset(load_examples(task, "test", args.data_dir), args.n)
    demos = draw_kshot(load_examples(task, "train", args.data_dir), 16, 13, task.label_names).train
    reference = matmul_gflops()
    rows = []
    for regime, given, naive_n in (("zero-shot", (), len(test)), ("few-shot", demos, args.naive_few_shot_n)):
        requests = requests_for(template, test, given, lm)
        stats = ScoreStats()
        fast, fast_s = timed(lambda: score_requests(lm.model, lm.tokenizer, requests, args.batch_size,
                                                    lm.max_length, stats))
        naive_stats = ScoreStats()
        naive, naive_s = timed(lambda: score_naive(lm.model, lm.tokenizer, requests[:naive_n], lm.max_length,
                                                   naive_stats))
        gap = max(abs(x - y) for a, b in zip(fast, naive) for x, y in zip(a.logliks, b.logliks))
        flops = count_flops(lambda: score_requests(lm.model, lm.tokenizer, requests, args.batch_size,
                                                   lm.max_length))
        rows.append({
            "regime": regime, "n": len(test), "fast_s": fast_s, "tokens": stats.tokens, "forwards": stats.forwards,
            "naive_n": naive_n, "naive_s_per_example": naive_s / naive_n, "naive_tokens": naive_stats.tokens,
            "ratio": (fast_s / len(test)) / (naive_s / naive_n), "gflops": flops / fast_s / 1e9, "gap": gap,
        })
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        env_cache = os.environ.get("HARNESS_CACHE")
        first = cli_seconds(["eval", "--out", tmp])
        rerun = cli_seconds(["eval", "--out", tmp])
    write_results(args, rows, reference, first, rerun, env_cache)


def write_results(args, rows, reference, first, rerun, env_cache) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Prompting (`python bench/prompting.py --data-dir ../shared/data`)", "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; model smollm2-135m (fp32); sst2 template `lmbff`, "
        f"fixed test subset of {args.n}; few-shot k = 16 per class (32 demos), seed 13; batch size {args.batch_size}.",
        f"Measured on {time.strftime('%Y-%m-%d')}.", "",
        f"Reference fp32 matmul (2048², same run): **{reference:.1f} GFLOP/s**.", "",
        "| regime | n | harness wall s | tokens run | forwards | naive s / example (n timed) | time ratio (target) "
        "| achieved GFLOP/s (% of matmul; target ≥ 80 %) | max |Δ loglik| vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    targets = {"zero-shot": 0.8, "few-shot": 0.2}
    for r in rows:
        target = targets[r["regime"]]
        met = "met" if r["ratio"] <= target else "missed"
        pct = 100 * r["gflops"] / reference
        lines.append(
            f"| {r['regime']} | {r['n']} | {r['fast_s']:.1f} | {r['tokens']} | {r['forwards']} | "
            f"{r['naive_s_per_example']:.3f} ({r['naive_n']}) | **{r['ratio']:.3f}×** (≤ {target}×, {met}) | "
            f"{r['gflops']:.1f} ({pct:.0f} %, {'met' if pct >= 80 else 'missed'}) | {r['gap']:.1e} |"
        )
    lines += [
        "",
        "Time ratio = harness seconds per example ÷ naive seconds per example (naive: one full forward per "
        "prompt + answer, no cache, no batching). FLOPs are counted by `torch.utils.flop_counter` over the same "
        "scoring call (masked attention counted as computed).",
        "",
        f"Default `harness eval` end to end (subprocess, cached converted model{'' if not env_cache else ', HARNESS_CACHE set'}): "
        f"**{first:.1f} s** (target ≤ 180 s, {'met' if first <= 180 else 'missed'}); "
        f"rerun from finished cells: **{rerun:.1f} s** (target ≤ 10 s, {'met' if rerun <= 10 else 'missed'}).",
        "",
    ]
    write_section("## Prompting", lines, Path(args.out))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
