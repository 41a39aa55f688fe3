"""Zero-shot scoring's FLOP/s on useful tokens against this machine's matmul rate (a benchmark, not a test).

    python bench/useful_flops.py [--data ../shared/data/mr/test.jsonl] [--limit 750] [--threads 1]

The zero-shot pass of `bench/vs_lmeval.py` (mr test, template "{{text}} It was", answers great/terrible, batch 16)
scored by harness's scorer and timed. Useful FLOPs are what scoring every prompt alone would cost: FlopCounterMode
over the same scorer at batch 1 (no padding, no packed neighbours, logits only where an answer is read), so
padding and masked attention count as waste. The reference is torch's fp32 GEMM rate at the same thread count,
taken twice: a 2048² square and the model's own MLP shape (tokens of one batch x hidden -> intermediate).
Writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from results_file import write_section

from harness import cpu_linear
from harness.cpu_linear import onednn_usable
from harness.models import load_model
from harness.scoring import ScoreRequest, ScoreStats, score_requests, tokenize_requests

ROOT = Path(__file__).resolve().parent.parent
WORDS = (" terrible", " great")  # the answers as harness renders them: after a space


def gemm_gflops(m: int, k: int, n: int, kernel: str, seconds: float = 3.0) -> float:
    """fp32 x @ w.T throughput for an (m, k) input and an (n, k) weight, best of repeated timings; kernel "torch"
    is F.linear (MKL on the CPU), "onednn" the oneDNN op harness's scorer uses."""
    x, w = torch.randn(m, k), torch.randn(n, k)
    run = ((lambda: torch.nn.functional.linear(x, w)) if kernel == "torch" else
           (lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")))
    run()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


@contextmanager
def plain_linears():
    """Scoring through F.linear, which FlopCounterMode counts (it does not count oneDNN's op)."""
    usable = cpu_linear.onednn_usable
    cpu_linear.onednn_usable = lambda: False
    try:
        yield
    finally:
        cpu_linear.onednn_usable = usable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mr" / "test.jsonl"))
    parser.add_argument("--limit", type=int, default=750)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2-135m", device="cpu", dtype=torch.float32)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()[: args.limit]]
    requests = [ScoreRequest("", f"{row['text']} It was", WORDS) for row in rows]
    units = tokenize_requests(lm.tokenizer, requests, lm.max_length)
    useful_tokens = sum(len(u.prefix) + len(u.context) + sum(len(c) - 1 for c in u.continuations) for u in units)
    mean_tokens = useful_tokens / len(units)

    score_requests(lm.model, lm.tokenizer, requests[: args.batch_size], args.batch_size, lm.max_length)  # warm-up
    timings = []
    for _ in range(2):
        stats = ScoreStats()
        start = time.perf_counter()
        score_requests(lm.model, lm.tokenizer, requests, args.batch_size, lm.max_length, stats)
        timings.append(time.perf_counter() - start)
    with plain_linears(), FlopCounterMode(display=False) as useful:  # the counter sees aten's linear only
        score_requests(lm.model, lm.tokenizer, requests, 1, lm.max_length)
    with plain_linears(), FlopCounterMode(display=False) as run:
        score_requests(lm.model, lm.tokenizer, requests, args.batch_size, lm.max_length)

    config = lm.model.config
    batch_rows = round(args.batch_size * mean_tokens)
    kernels = ("torch", "onednn") if onednn_usable() else ("torch",)
    square = {kernel: gemm_gflops(2048, 2048, 2048, kernel) for kernel in kernels}
    shaped = {kernel: gemm_gflops(batch_rows, config.hidden_size, config.intermediate_size, kernel)
              for kernel in kernels}
    best = max(max(square.values()), max(shaped.values()))
    seconds = min(timings)
    achieved = useful.get_total_flops() / seconds / 1e9
    lines = [
        f"## Zero-shot FLOP/s on useful tokens, {len(rows)} examples",
        "",
        f"`python bench/useful_flops.py --limit {args.limit} --threads {args.threads}`: the zero-shot pass of "
        f"`bench/vs_lmeval.py` (mr test, first {len(rows)} rows), embedded SmolLM2 in fp32, batch {args.batch_size}, "
        f"{args.threads} torch thread(s), {platform.machine()} CPU, torch {torch.__version__}; "
        f"{time.strftime('%Y-%m-%d')}. Scoring only (no process start, no model load); the better of two timings.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| useful tokens (prompt tokens + answer tokens after the first) | {useful_tokens} ({mean_tokens:.1f} per prompt) |",
        f"| forward calls (batch {args.batch_size}) | {stats.forwards} |",
        f"| scoring wall time | {seconds:.2f} s (other timing {max(timings):.2f} s) |",
        f"| useful FLOPs (each prompt alone, batch 1) | {useful.get_total_flops() / 1e12:.3f} TFLOP |",
        f"| FLOPs the batched run computed (padding, masks) | {run.get_total_flops() / 1e12:.3f} TFLOP "
        f"({100 * (run.get_total_flops() / useful.get_total_flops() - 1):.1f} % over useful) |",
        *(f"| fp32 GEMM through {kernel}, 2048² / the MLP's shape ({batch_rows} x {config.hidden_size} -> "
          f"{config.intermediate_size}) | {square[kernel]:.1f} / {shaped[kernel]:.1f} GFLOP/s |" for kernel in kernels),
        f"| **achieved on useful tokens** | **{achieved:.1f} GFLOP/s = {100 * achieved / best:.0f} % of the fastest "
        f"GEMM rate measured ({best:.1f})** (target ≥ 80 %: {'met' if achieved >= 0.8 * best else 'missed'}) |",
        f"| scorer's linear layers | {'oneDNN' if onednn_usable() else 'torch (MKL)'} |",
    ]
    write_section(lines[0], lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
