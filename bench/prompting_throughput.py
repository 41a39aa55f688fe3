"""Prompting throughput by batch size (a benchmark, not a test): tokens/s of harness's scorer for zero-shot and
few-shot at batch sizes 16 to 256, on whatever device the harness picks (CUDA with bf16 when present).

    python bench/prompting_throughput.py [--data-dir ../shared/data] [--n 1000] [--batch-sizes 16,32,64,128,256]

sst2 test (a fixed subset of n), template lmbff, few-shot with k = 16 per class (32 demos, seed 13, all in the
prompt). Tokens/s counts the tokens the model ran (ScoreStats.tokens: real tokens, the demo prefix once), and
examples/s the test inputs scored. Each point is the better of two timings after a warm-up batch. Writes its
section of bench/RESULTS.md, named after the device. Written for a lent GPU (issue "Prompting at the hardware
limit"); on the CPU use small --n.
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import write_section

from harness.models import load_model
from harness.prompts import answers, load_template, render_input, render_prefix
from harness.predict import fit_demos
from harness.sampling import draw_kshot, select_test_subset
from harness.scoring import ScoreRequest, ScoreStats, score_requests
from harness.tasks import load_examples, load_task


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    lm = load_model(args.model)
    task = load_task("sst2")
    template = load_template(task, "lmbff")
    test = select_test_subset(load_examples(task, "test", args.data_dir), args.n)
    demos = draw_kshot(load_examples(task, "train", args.data_dir), 16, 13, task.label_names).train
    lines = [f"## Prompting throughput by batch size, {device_name()}", "",
             f"`python bench/prompting_throughput.py --n {args.n} --batch-sizes {args.batch_sizes}`: "
             f"{time.strftime('%Y-%m-%d')}, {args.model} in {lm.dtype} on {device_name()}, torch {torch.__version__}; "
             f"sst2 test ({len(test)} inputs), template lmbff, few-shot 16 demos per class.", "",
             "| regime | batch size | wall s | tokens run | tokens/s | examples/s | forwards |", "|---|---|---|---|---|---|---|"]
    for regime, given in (("zero-shot", ()), ("few-shot", demos)):
        kept = fit_demos(lm.tokenizer, lm.max_length, template, test, given, answers(template))
        requests = [ScoreRequest(render_prefix(template, d), render_input(template, e), tuple(answers(template)))
                    for e, d in zip(test, kept)]
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            score_requests(lm.model, lm.tokenizer, requests[:batch_size], batch_size, lm.max_length)  # warm-up
            best = None
            for _ in range(2):
                stats = ScoreStats()
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                start = time.perf_counter()
                score_requests(lm.model, lm.tokenizer, requests, batch_size, lm.max_length, stats)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                best = min(best or (seconds, stats), (seconds, stats), key=lambda pair: pair[0])
            seconds, stats = best
            lines.append(f"| {regime} | {batch_size} | {seconds:.2f} | {stats.tokens} | {stats.tokens / seconds:,.0f} | "
                         f"{len(requests) / seconds:,.1f} | {stats.forwards} |")
            print(lines[-1], flush=True)
    write_section(lines[0], lines)


if __name__ == "__main__":
    main()
