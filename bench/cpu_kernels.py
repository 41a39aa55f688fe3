"""CPU kernel choice (not a test): a zero-shot pass over the same examples with the linear layers forced through
torch's MKL path, forced through oneDNN, and as chosen by measuring (the default), alternating, at one thread.
Target: the measured choice is no slower than the plain torch path. Records the machine's CPU kind.

    python bench/cpu_kernels.py --data-dir ../shared/data      # writes its section of bench/RESULTS.md

Each timing runs in its own process (the choice is made once per process), one thread, same examples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from results_file import write_section

MARK = "## CPU kernel choice"


def child(data_dir: str, n: int) -> None:
    import torch

    torch.set_num_threads(1)
    from harness import cpu_linear
    from harness.models import load_model
    from harness.predict import predict_prompting
    from harness.prompts import load_template
    from harness.sampling import select_test_subset
    from harness.tasks import load_examples, load_task

    lm = load_model("smollm2-135m")
    task = load_task("mr")
    template = load_template(task, "lmbff")
    test = select_test_subset(load_examples(task, "test", data_dir), n)
    predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, test[:16], (), 16)  # warm-up and choice
    start = time.perf_counter()
    run = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, test, (), 16)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "choice": cpu_linear.choice(),
                      "accuracy": sum(p.pred == e.label for p, e in zip(run.predictions, test)) / len(test)}))


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        return child(args.data_dir, args.n)
    import torch

    runs: dict[str, list[dict]] = {"torch": [], "onednn": [], "measured": []}
    for _ in range(args.repeats):
        for mode in runs:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            env.pop("HARNESS_CPU_LINEAR", None)
            if mode != "measured":
                env["HARNESS_CPU_LINEAR"] = mode
            out = subprocess.run([sys.executable, __file__, "--child", "--data-dir", args.data_dir, "--n", str(args.n)],
                                 capture_output=True, text=True, check=True, env=env)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    best = {mode: min(r["seconds"] for r in rs) for mode, rs in runs.items()}
    chosen = runs["measured"][-1]["choice"]
    ratio = best["measured"] / best["torch"]
    lines = [
        MARK + " (`python bench/cpu_kernels.py --data-dir ../shared/data`)", "",
        f"{cpu_name()}, torch {torch.__version__} reporting `{torch.backends.cpu.get_cpu_capability()}`, 1 thread; "
        f"zero-shot on {args.n} mr test examples (template lmbff), each timing in its own process, best of "
        f"{args.repeats} (alternating); {time.strftime('%Y-%m-%d')}.", "",
        "| linear path | seconds (each run) | best |", "|---|---|---|",
        *(f"| {mode} | {', '.join('%.1f' % r['seconds'] for r in rs)} | {best[mode]:.1f} |" for mode, rs in runs.items()),
        "",
        f"The measured choice here: **{chosen.get('path')}** (GEMM timings on the model's shapes, 512 rows: "
        f"{chosen.get('seconds')}). Measured ÷ torch = **{ratio:.2f}** (target ≤ 1.0, within timing noise: "
        f"{'met' if ratio <= 1.03 else 'missed'}). Accuracy in every run: "
        f"{sorted({r['accuracy'] for rs in runs.values() for r in rs})}.", "",
    ]
    write_section(MARK, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
