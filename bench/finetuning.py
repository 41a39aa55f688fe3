"""Fine-tuning benchmark (not a test): head cost vs one forward pass, full vs a plain HF Trainer, padding, RSS.

    python bench/finetuning.py            # appends its section to bench/RESULTS.md

Data: bbc_news, template `short`, k = 16 per class (80 train + 80 dev), seed 13, the default 200 test examples.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_section

from harness.backbone import anatomy
from harness.cells import draw_for, fit_data
from harness.models import load_model
from harness.prompts import load_template
from harness.truncation import render_splits
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.full import FullSettings
from harness.regimes.head import HeadSettings
from harness.regimes.protocol import RegimeRun, Shared
from harness.sampling import select_test_subset
from harness.tasks import load_examples, load_task
from harness.types import Cell

HERE = Path(__file__).resolve().parent
MARK = "## Fine-tuning"


CELL = Cell("bbc_news", "short", "full", 16, 13)


def cell_data():
    task = load_task("bbc_news")
    draw = draw_for(CELL, get_regime("full"), FullSettings(), 1, load_examples(task, "train"), [], task)
    return task, fit_data(draw, select_test_subset(load_examples(task, "test"), 200), task, CELL)


def cell_texts(tokenizer):
    task, data = cell_data()
    texts, labels = render_splits(load_template(task, "short"), data, tokenizer, 256)
    return task, texts, labels


def run_regime(lm, name: str, settings) -> RegimeRun:
    """One cell of `name` on the benchmark's data, as `harness eval` runs it."""
    task, data = cell_data()
    return get_regime(name).run(lm, Shared(FeatureStore(lm.model, lm.tokenizer)), load_template(task, "short"), data,
                                settings, False)


@torch.inference_mode()
def plain_forward_seconds(lm, texts: list[str], batch_size: int) -> float:
    """One forward of the backbone over every input, length-sorted batches: the floor for `head`."""
    enc = lm.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]), reverse=True)
    backbone = anatomy(lm.model).decoder
    start = time.perf_counter()
    for s in range(0, len(order), batch_size):
        rows = [enc[i] for i in order[s : s + batch_size]]
        width = max(map(len, rows))
        ids = torch.tensor([r + [lm.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        backbone(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - start


def trainer_tokens_per_second(lm, texts, labels, steps: int, batch_size: int) -> float:
    """A plain transformers Trainer on the same model, data, batch size and lengths."""
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    with tempfile.TemporaryDirectory() as tmp:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        model = AutoModelForSequenceClassification.from_pretrained(tmp, num_labels=5, dtype=torch.float32)
        model.config.pad_token_id = lm.tokenizer.pad_token_id
        data = Dataset.from_dict({"text": texts, "label": labels}).map(
            lambda b: lm.tokenizer(b["text"], truncation=True, max_length=256), batched=True, remove_columns=["text"])
        args = TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size,
                                 learning_rate=4e-5, warmup_steps=max(1, steps // 10), max_grad_norm=1.0,
                                 logging_steps=10**6, save_strategy="no", report_to=[],
                                 train_sampling_strategy="group_by_length", seed=13,
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=DataCollatorWithPadding(lm.tokenizer))
        tokens = []
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            tokens.append(int(batch["attention_mask"].sum()))
            return batch

        trainer.data_collator = counting
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return sum(tokens[:steps]) / seconds


def plain_loop_rates(lm, texts, labels, steps: int, batch_size: int) -> tuple[float, float]:
    """(steps/s, tokens/s) of the plainest loop over full's own batches: a copy of the backbone and a linear head,
    forward, cross-entropy, backward, AdamW step; no schedule, clipping, dev checks or bookkeeping."""
    import copy

    from harness.regimes.classifier import pool
    from harness.regimes.training import _cycle_batches

    enc = [list(ids) for ids in lm.tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    backbone = copy.deepcopy(anatomy(lm.model).decoder).float().train()
    head = torch.nn.Linear(lm.model.config.hidden_size, 5)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=4e-5)
    batches = _cycle_batches([len(e) for e in enc], batch_size, 13)
    pad, tokens, seconds = lm.tokenizer.pad_token_id, 0, 0.0
    for _ in range(steps):
        rows = next(batches)
        width = max(len(enc[i]) for i in rows)
        ids = torch.tensor([enc[i] + [pad] * (width - len(enc[i])) for i in rows])
        mask = torch.tensor([[1] * len(enc[i]) + [0] * (width - len(enc[i])) for i in rows])
        y = torch.tensor([labels[i] for i in rows])
        start = time.perf_counter()
        hidden = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(pool(hidden, mask, "last")), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - start
        tokens += int(mask.sum())
    return steps / seconds, tokens / seconds


def full_rss_child(steps: int) -> None:
    """Run one `full` fit in this process and print its peak RSS (the model load included)."""
    lm = load_model("smollm2-135m")
    run_regime(lm, "full", FullSettings(max_steps=steps, eval_every=steps))
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rss-child", action="store_true")
    args = parser.parse_args()
    if args.rss_child:
        return full_rss_child(args.steps)
    lm = load_model("smollm2-135m")
    task, texts, labels = cell_texts(lm.tokenizer)
    all_texts = texts["train"] + texts["dev"] + texts["test"]
    plain = plain_forward_seconds(lm, all_texts, 16)
    start = time.perf_counter()
    run_regime(lm, "head", HeadSettings())
    head_s = time.perf_counter() - start

    cfg = FullSettings(max_steps=args.steps, eval_every=args.steps)  # one dev check at the end
    start = time.perf_counter()
    fit = run_regime(lm, "full", cfg)
    full_s = time.perf_counter() - start
    history = fit.details["selection"]["history"]
    ours = fit.cost.train_tokens / fit.details["train_step_seconds"]  # training steps only, like the Trainer
    theirs = trainer_tokens_per_second(lm, texts["train"], labels["train"], args.steps, cfg.batch_size)
    plain_steps, plain_tokens = plain_loop_rates(lm, texts["train"], labels["train"], args.steps, cfg.batch_size)
    full_steps = fit.cost.train_steps / fit.details["train_step_seconds"]
    child = subprocess.run([sys.executable, __file__, "--rss-child", "--steps", str(args.steps)],
                           capture_output=True, text=True, check=True)
    rss = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_bytes"]
    pad = fit.details["padding_fraction"]
    lines = [
        MARK + " (`python bench/finetuning.py`)", "",
        f"Same machine as above, torch with {torch.get_num_threads()} thread(s) (ratios compare timings of this run); bbc_news, template `short`, k = 16 per class, seed 13; "
        f"{len(texts['train'])} train, {len(texts['dev'])} dev, {len(texts['test'])} test inputs; "
        f"{time.strftime('%Y-%m-%d')}.", "",
        "| measure | value | target | met? |", "|---|---|---|---|",
        f"| (a) `head` wall time ÷ one plain forward over train+dev+test inputs | {head_s:.2f} s ÷ {plain:.2f} s = "
        f"**{head_s / plain:.2f}** | ≤ 1.1 | {'met' if head_s / plain <= 1.1 else 'missed'} |",
        f"| (b) `full` training tokens/s ÷ plain HF `Trainer` ({args.steps} steps, batch {cfg.batch_size}) | "
        f"{ours:.0f} ÷ {theirs:.0f} = **{ours / theirs:.2f}** | ≥ 1.0 | {'met' if ours / theirs >= 1.0 else 'missed'} |",
        f"| (c) padding fraction of `full` batches | **{100 * pad:.1f} %** | < 10 % | {'met' if pad < 0.1 else 'missed'} |",
        f"| (d) peak RSS of `full` (fresh process: model load + {args.steps} steps) | **{rss / 2**30:.2f} GiB** | — | — |",
        f"| (e) `full` steps/s and tokens/s ÷ a plain loop over the same batches (no schedule, clipping or "
        f"bookkeeping) | {full_steps:.2f} ÷ {plain_steps:.2f} steps/s, {ours:.0f} ÷ {plain_tokens:.0f} tokens/s = "
        f"**{ours / plain_tokens:.2f}** | — | — |",
        "",
        f"Both count non-pad training tokens over the time spent in training steps: `full`'s optimizer steps "
        f"({fit.details['train_step_seconds']:.1f} s of a {full_s:.1f} s fit that also copies the model, checks dev "
        f"and predicts the test set), the Trainer's `trainer.train()`. Dev history: {history}.",
        "",
    ]
    write_section(MARK, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
