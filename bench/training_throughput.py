"""Training throughput (not a test): `full` and `prompt-ft` steps (padded and packed rows) on sst2, k = 16 per
class (32 training inputs, batches of 8), one thread: useful tokens per second, FLOP/s on useful tokens
(6 x block parameters x tokens), as a fraction of this machine's MKL GEMM rate at the step's shapes, and where the
step's time goes; and a plain Hugging Face `Trainer` over the same inputs, with and without torch.compile.

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


def trainer_run(lm, data_dir: str, steps: int, compile_model: bool) -> tuple[float, int]:
    """The same 32 sst2 inputs through a plain Hugging Face `Trainer` (a `...ForSequenceClassification` with the
    same weights, padded batches of 8, AdamW, the same number of steps): (seconds in train(), useful tokens)."""
    import tempfile

    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    from harness.truncation import render_splits

    task = load_task("sst2")
    cell = Cell("sst2", "lmbff", "full", 16, 13)
    settings = FullSettings()
    draw = draw_for(cell, get_regime("full"), settings, 1, load_examples(task, "train", data_dir), [], task)
    data = fit_data(draw, load_examples(task, "test", data_dir)[:16], task, cell)
    texts, labels = render_splits(load_template(task, "lmbff"), data, lm.tokenizer, 256, lm.max_length)
    encoded = lm.tokenizer(texts["train"], truncation=True, max_length=256)
    rows = [{"input_ids": ids, "labels": label} for ids, label in zip(encoded["input_ids"], labels["train"])]
    config = lm.model.config.__class__.from_dict({**lm.model.config.to_dict(), "num_labels": 2,
                                                  "pad_token_id": lm.tokenizer.pad_token_id})
    model = AutoModelForSequenceClassification.from_config(config)
    model.model.load_state_dict(lm.model.model.state_dict())
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, per_device_train_batch_size=8, max_steps=steps, learning_rate=1e-5,
                                 report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, seed=13,
                                 dataloader_num_workers=0, torch_compile=compile_model)
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(lm.tokenizer))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    per_epoch = sum(len(ids) for ids in encoded["input_ids"])
    return seconds, per_epoch * steps * 8 // len(rows)


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
    parser.add_argument("--compile-steps", type=int, default=3, help="steps of the torch.compile case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_model("smollm2-135m")
    blocks = block_parameters(lm.model)
    common = {"max_steps": args.steps, "eval_every": args.steps}
    cases = {"full, padded rows": ("full", FullSettings(**common)),
             "full, packed rows (--pack)": ("full", FullSettings(**common, pack=True)),
             "prompt-ft, padded rows": ("prompt-ft", PromptFtSettings(**common)),
             "prompt-ft, packed rows (--pack)": ("prompt-ft", PromptFtSettings(**common, pack=True))}
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
    plain = {}
    for name, compiled in (("plain Hugging Face Trainer (full's inputs, padded)", False),
                           ("plain Hugging Face Trainer + torch.compile", True)):
        steps = args.compile_steps if compiled else args.steps  # inductor compiles again for every batch shape
        seconds, tokens = trainer_run(lm, args.data_dir, steps, compiled)
        plain[name] = seconds
        rows.append((f"{name} ({steps} steps)", seconds / steps, tokens / seconds, 6 * blocks * tokens / seconds / 1e9,
                     tokens / steps, float("nan")))
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
    lines += [f"| {n} | {s:.2f} | {t:.0f} | {f:.0f} | {f / rate:.2f} | {p:.0f} | "
              f"{'—' if pad != pad else f'{100 * pad:.0f} %'} |" for n, s, t, f, p, pad in rows]
    trainer = rows[-2][1]
    lines += ["", "harness's step time ÷ the plain Trainer's (same inputs, batches, steps; the Trainer's whole "
                  "`train()` timed, so its few seconds of set-up count against it): "
              + "; ".join(f"{n} {r[1] / trainer:.2f}" for n, r in zip(cases, rows)) + ". torch.compile (inductor, "
              f"this CPU) against the plain Trainer: {rows[-1][1] / trainer:.1f}× its step time over "
              f"{args.compile_steps} steps, compilation included — length-grouped batches change shape at every "
              "step, so inductor compiles again and again; at these shapes compilation costs more than a short "
              "CPU run could win back, so the harness does not compile."]
    write_section(MARK, lines + [""])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
