"""harness against lm-evaluation-harness, side by side (a benchmark, not a test).

The same converted model folder (the embedded SmolLM2), the same JSONL (mr's test split, the first --limit rows),
the same prompt ("<text> It was" + " terrible"/" great"), fp32 on the CPU, batch 16, one torch thread per process,
the two tools run as separate processes and interleaved (harness, lm-eval, harness, lm-eval, ...). Zero-shot and
few-shot with every one of k demos per class in the prompt (`--demos all`), the demos harness drew with seed 13
handed to lm-eval in the same order (its fewshot_config: sampler first_n over a file of them). Per-example
log-likelihoods are compared (|Δ| ≤ 1e-4 expected), and the wall and CPU time ratios of every pair go into
bench/RESULTS.md. Nothing is installed into the project: lm-eval lives in a side venv,

    python -m venv --system-site-packages /tmp/lmeval-venv && /tmp/lmeval-venv/bin/pip install lm-eval==0.4.13
    python bench/vs_lmeval.py --lm-eval /tmp/lmeval-venv/bin/lm_eval [--limit 750] [--shots 0,4,16] [--repeats 2]

Wall time is each tool's whole command (model load included, as a user waits for it). harness runs its linear
layers through the kernel it measured faster on this machine (harness/cpu_linear.py); `--cpu-linear torch` or
`onednn` forces a path (lm-eval always runs torch's default MKL path), to show what the choice is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_section

from harness.models import ensure_embedded_converted

MARK = "## harness against lm-eval"
ROOT = Path(__file__).resolve().parent.parent
LABELS = ("negative", "positive")
WORDS = ("terrible", "great")


def write_tasks(work: Path, data: Path, limit: int) -> Path:
    """A harness task + template and the test JSONL (first `limit` rows) under `work`; returns the test file."""
    rows = [json.loads(line) for line in data.read_text().splitlines()][:limit]
    (work / "data").mkdir(parents=True, exist_ok=True)
    test = work / "data" / "test.jsonl"
    test.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows))
    train = work / "data" / "train.jsonl"
    train.write_text((data.parent / "train.jsonl").read_text())
    (work / "tasks").mkdir(exist_ok=True)
    (work / "tasks" / "mrbench.yaml").write_text(
        "name: mrbench\nversion: 1\ndataset:\n  data_files: {train: ../data/train.jsonl, validation: ../data/train.jsonl, "
        "test: ../data/test.jsonl}\nsplits: {train: train, validation: validation, test: test}\n"
        "input_fields: [text]\nlabel_field: label\nlabel_names: [negative, positive]\nmetrics: [accuracy]\n"
        "templates: [lmbff]\n")
    (work / "prompts" / "mrbench").mkdir(parents=True, exist_ok=True)
    (work / "prompts" / "mrbench" / "lmbff.jinja").write_text(
        "{#\ndescription: 'LM-BFF cloze'\nverbalizers: {negative: terrible, positive: great}\n#}\n{{ text }} It was\n")
    return test


def lmeval_task(work: Path, test: Path, demos: list[dict], name: str, chat: bool = False) -> None:
    """An lm-eval task reading the same test file; fixed demos in the given order when there are any. chat: the
    answer is the assistant's first words, so no delimiter before it (as harness --chat-template scores)."""
    folder = work / "lmeval" / name
    folder.mkdir(parents=True, exist_ok=True)
    files = {"test": str(test)}
    lines = [f"task: {name}", "dataset_path: json", "test_split: test", "output_type: multiple_choice",
             "doc_to_text: \"{{text}} It was\"", "doc_to_target: label", f"doc_to_choice: {json.dumps(list(WORDS))}",
             f"target_delimiter: {json.dumps('' if chat else ' ')}", "fewshot_delimiter: \"\\n\\n\"", "metric_list:",
             "  - metric: acc"]
    if demos:
        shots = folder / "demos.jsonl"
        shots.write_text("".join(json.dumps(d) + "\n" for d in demos))
        files["demos"] = str(shots)
        lines += ["fewshot_split: demos", "fewshot_config:", "  sampler: first_n"]
    lines.insert(2, "dataset_kwargs:\n  data_files: " + json.dumps(files))
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU seconds of the child) of one command; a failure prints its output and stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def harness_run(work: Path, model: Path, k: int, env: dict[str, str], chat: bool = False) -> tuple[float, float, Path]:
    out = work / f"harness-k{k}-{time.time_ns()}"
    regime = ["--regimes", "zero-shot"] if k == 0 else ["--regimes", "few-shot", "--demos", "all", "--k", str(k),
                                                          "--seeds", "13"]
    wall, cpu = timed(["harness", "eval", "--model", str(model), "--tasks", "mrbench", "--tasks-dir", str(work / "tasks"),
                       "--prompts-dir", str(work / "prompts"), "--limit", "all", "--batch-size", "16", "--out", str(out),
                       *regime, *(["--chat-template"] if chat else [])], env)
    return wall, cpu, next(out.rglob("*.json"))


def lmeval_run(work: Path, model: Path, name: str, shots: int, env: dict[str, str], lm_eval: str,
               chat: bool = False) -> tuple[float, float, Path]:
    out = work / f"lmeval-{name}-{time.time_ns()}"
    wall, cpu = timed([lm_eval, "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
                       "--tasks", name, "--include_path", str(work / "lmeval" / name), "--num_fewshot", str(shots),
                       "--batch_size", "16", "--device", "cpu", "--log_samples", "--output_path", str(out),
                       *(["--apply_chat_template", *(["--fewshot_as_multiturn"] if shots else [])] if chat else [])],
                      env)
    return wall, cpu, next(out.rglob(f"samples_{name}_*.jsonl"))


def compare(harness_json: Path, samples: Path) -> tuple[float, bool, float]:
    """(largest |Δ log-likelihood| over examples and classes, whether the predictions are identical, largest |Δ| of
    the class scores relative to the first class's — what a prediction compares)."""
    ours = [json.loads(line) for line in harness_json.with_suffix(".jsonl").read_text().splitlines()]
    theirs = sorted((json.loads(line) for line in samples.read_text().splitlines()), key=lambda s: s["doc_id"])
    worst, same, relative = 0.0, True, 0.0
    for mine, other in zip(sorted(ours, key=lambda r: int(r["id"].rsplit("-", 1)[-1])), theirs):
        logliks = [float(r[0]) for r in other["filtered_resps"]]
        worst = max(worst, max(abs(a - b) for a, b in zip(mine["loglik"], logliks)))
        relative = max(relative, max(abs((a - mine["loglik"][0]) - (b - logliks[0]))
                                     for a, b in zip(mine["loglik"], logliks)))
        same &= mine["pred"] == max(range(len(logliks)), key=logliks.__getitem__)
    return worst, same, relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-eval", required=True, help="the lm_eval command of a side venv")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mr" / "test.jsonl"))
    parser.add_argument("--limit", type=int, default=750)
    parser.add_argument("--shots", default="0,4,16", help="demos per class; 0 is zero-shot")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu-linear", choices=("measured", "onednn", "torch"), default="measured",
                        help="harness's CPU linear layers (HARNESS_CPU_LINEAR); lm-eval always runs torch's")
    parser.add_argument("--chat", action="store_true",
                        help="prompts through the model's chat template, in both tools (answers without delimiter)")
    args = parser.parse_args()
    model, _ = ensure_embedded_converted()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **({"HARNESS_CPU_LINEAR": args.cpu_linear} if args.cpu_linear != "measured" else {})}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-lmeval-") as tmp:
        work = Path(tmp)
        test = write_tasks(work, Path(args.data), args.limit)
        for k in (int(s) for s in args.shots.split(",")):
            for repeat in range(args.repeats):
                h_wall, h_cpu, result = harness_run(work, model, k, env, args.chat)
                raw = json.loads(result.read_text())
                ids = raw.get("demo_ids") or raw.get("train_ids") or []
                train = {f"train-{i}": json.loads(line) for i, line in
                         enumerate((work / "data" / "train.jsonl").read_text().splitlines())}
                demos = [train[i] for i in ids] if k else []
                name = f"mrbench_k{k}"
                lmeval_task(work, test, demos, name, args.chat)
                l_wall, l_cpu, samples = lmeval_run(work, model, name, len(demos), env, args.lm_eval, args.chat)
                worst, same, relative = compare(result, samples)
                rows.append({"k": k, "repeat": repeat, "harness_wall": h_wall, "lmeval_wall": l_wall,
                             "harness_cpu": h_cpu, "lmeval_cpu": l_cpu, "max_abs_loglik_diff": worst,
                             "max_abs_relative_diff": relative, "same_predictions": same, "examples": args.limit})
                print(json.dumps(rows[-1]), flush=True)
    kernel = {"measured": "", "onednn": ", harness's linear layers through oneDNN (forced)",
              "torch": ", harness's linear layers through torch (MKL)"}[args.cpu_linear]
    chat = ", chat template (harness --chat-template, lm-eval --apply_chat_template --fewshot_as_multiturn)" \
        if args.chat else ""
    heading = f"{MARK}, demos per class {args.shots}, {args.limit} examples{kernel}{chat}"  # one section per such run
    lines = [heading, "",
             f"`python bench/vs_lmeval.py --lm-eval ... --limit {args.limit} --shots {args.shots} --repeats "
             f"{args.repeats}{f' --cpu-linear {args.cpu_linear}' if kernel else ''}{' --chat' if chat else ''}`: {time.strftime('%Y-%m-%d')}, mr test (first {args.limit} rows), embedded SmolLM2 (converted folder) in fp32 on the CPU, "
             "batch 16, one torch thread per process, each tool's whole command timed, pairs interleaved; harness's "
             f"linear layers through {path_text(args.cpu_linear)}, lm-eval's through torch (MKL). CPU: {cpu_kind()}.",
             "",
             "| demos per class | pair | harness wall (s) | lm-eval wall (s) | wall ratio | CPU ratio | max abs Δ loglik | "
             "max abs Δ of class differences | same predictions |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['k']} | {r['repeat'] + 1} | {r['harness_wall']:.1f} | {r['lmeval_wall']:.1f} | "
                     f"{r['harness_wall'] / r['lmeval_wall']:.3f} | {r['harness_cpu'] / r['lmeval_cpu']:.3f} | "
                     f"{r['max_abs_loglik_diff']:.1e} | {r['max_abs_relative_diff']:.1e} | {r['same_predictions']} |")
    if args.chat:
        lines += ["", "With a chat template the context ends in the assistant's opening (\"...assistant\\n\"): lm-eval "
                  "moves that trailing whitespace into every answer, so its log-likelihoods include the newline's, the "
                  "same for every class; the class differences (what a prediction compares) are the check."]
    write_section(heading, lines)


def path_text(choice: str) -> str:
    """What harness's linear layers ran through in this run."""
    if choice != "measured":
        return {"torch": "torch (MKL), forced", "onednn": "oneDNN, forced"}[choice]
    import torch

    from harness.cpu_linear import chosen_path

    torch.set_num_threads(1)
    made = chosen_path(((192, 576), (576, 576), (576, 1536), (1536, 576)))  # SmolLM2's routed shapes, as cached
    return f"the kernel measured faster on this machine ({'MKL' if made['path'] == 'torch' else 'oneDNN'})"


def cpu_kind() -> str:
    import platform

    import torch

    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown"
    return f"{name}, torch reports {torch.backends.cpu.get_cpu_capability()}"


if __name__ == "__main__":
    main()
