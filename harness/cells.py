"""Compute one cell: draw its data, run its regime, build the result record with costs and provenance."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.metrics import compute_metrics
from harness.prompts import answers, render_input
from harness.results import Cell, harness_provenance
from harness.sampling import TEST_SUBSET_SEED, KShotDraw, draw_kshot
from harness.types import Example, Prediction, TaskSpec, Template


ZERO_SHOT_DEV_K, ZERO_SHOT_DEV_SEED = 16, 0  # zero-shot draws nothing else: its dev set for choosing a template


def draw_for(cell: Cell, train: Sequence[Example], validation: Sequence[Example], task: TaskSpec,
             prompt_dev: bool = False) -> KShotDraw:
    """The cell's training set and dev set: k per class with the seed, or the whole train split (k = full).

    Prompting cells get a dev set only when `prompt_dev` (several templates to choose from).
    """
    if cell.seed is None:
        if not prompt_dev:
            return KShotDraw((), ())
        smallest = min(sum(e.label == c for e in train) for c in range(len(task.label_names)))
        dev = draw_kshot(train, min(ZERO_SHOT_DEV_K, smallest), ZERO_SHOT_DEV_SEED, task.label_names).train
        return KShotDraw((), dev)
    if cell.k < 0:
        return KShotDraw(tuple(train), tuple(validation))
    with_dev = cell.regime in ("head", "full") or prompt_dev
    return draw_kshot(train, cell.k, cell.seed, task.label_names, with_dev=with_dev)


def run_cell(lm: Any, store: Any, task: TaskSpec, template: Template, cell: Cell, draw: KShotDraw,
             test: Sequence[Example], options: dict[str, Any], progress: bool) -> tuple[dict[str, Any], list[Prediction]]:
    """Predictions and the result record (without provenance) of one cell."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    if cell.regime in ("zero-shot", "few-shot"):
        preds, record = _prompting(lm, template, draw, test, options, progress)
    else:
        preds, record = _fine_tuning(lm, store, task, template, cell, draw, test, options, progress)
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    blocks = _block_parameters(lm)
    total = _regime_parameters(lm, cell.regime, len(task.label_names))
    cost = record.setdefault("cost", {})
    cost["trainable_parameters_percent"] = 100 * cost.get("trainable_parameters", 0) / total
    cost["total_parameters"] = total
    cost["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak so far
    cost["peak_cuda_bytes"] = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    cost["block_parameters"] = blocks
    record["metrics"] = compute_metrics(task.metrics, preds)
    record["n"] = len(preds)
    return record, preds


def _regime_parameters(lm: Any, regime: str, classes: int) -> int:
    """Parameters of the model a regime runs: the LM for prompting, the backbone plus a new head otherwise."""
    from harness.regimes.features import backbone_of

    if regime in ("zero-shot", "few-shot"):
        return sum(p.numel() for p in lm.model.parameters())
    backbone = sum(p.numel() for p in backbone_of(lm.model).parameters())
    return backbone + classes * (lm.model.config.hidden_size + 1)


def _block_parameters(lm: Any) -> int:
    from harness.regimes.features import block_parameters

    return block_parameters(lm.model)


def _prompting(lm: Any, template: Template, draw: KShotDraw, test: Sequence[Example], options: dict[str, Any],
               progress: bool) -> tuple[list[Prediction], dict[str, Any]]:
    from harness.regimes.prompting import predict_prompting

    run = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, test, draw.train,
                            options["batch_size"], progress)
    preds = run.predictions
    n_classes = len(template.verbalizers)
    blocks = _block_parameters(lm)
    extra = {}
    if draw.dev:  # scored with the same demos; only the leaderboard's choice of template reads it
        dev = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, draw.dev, draw.train,
                                options["batch_size"], False).predictions
        extra["selection"] = {"rule": "the leaderboard picks, per seed, the template with the best dev accuracy",
                              "dev_accuracy": sum(p.pred == p.gold for p in dev) / len(dev)}
        extra["dev_ids"] = [e.id for e in draw.dev]
    return preds, {
        **extra,
        "effective_k": {
            "requested": len(draw.train) // n_classes,
            "min": min(p.n_demos for p in preds) / n_classes,
            "mean": sum(p.n_demos for p in preds) / len(preds) / n_classes,
        },
        "context": {
            "max_length": lm.max_length,
            "examples_with_demos_dropped": sum(p.n_demos < len(draw.train) for p in preds),
            "examples_truncated_left": sum(p.truncated_tokens > 0 for p in preds),
        },
        "demo_ids": [e.id for e in draw.train],
        "tokens_processed": run.stats.tokens,
        "forward_passes": run.stats.forwards,
        "cost": {
            "trainable_parameters": 0, "train_examples": 0, "train_steps": 0, "train_tokens": 0,
            "train_wall_time_s": 0.0, "train_flops": 0, "stored_bytes_per_task": 0,
            # what an uncached forward over the whole prompt, demos included, costs per test example
            "inference_flops_per_example": 2 * blocks * sum(p.prompt_tokens for p in preds) / len(preds),
        },
    }


def _fine_tuning(lm: Any, store: Any, task: TaskSpec, template: Template, cell: Cell, draw: KShotDraw,
                 test: Sequence[Example], options: dict[str, Any], progress: bool) -> tuple[list[Prediction], dict]:
    from harness.regimes.full import fit_full
    from harness.regimes.head import fit_head
    from harness.regimes.training import TrainingDiverged

    texts = {"train": [render_input(template, e) for e in draw.train],
             "dev": [render_input(template, e) for e in draw.dev],
             "test": [render_input(template, e) for e in test]}
    labels = {"train": [e.label for e in draw.train], "dev": [e.label for e in draw.dev]}  # never the test labels
    answer_ids = _first_answer_tokens(lm.tokenizer, template)
    seed = cell.seed if cell.seed is not None else 0
    tokens_before = store.tokens_run
    started = time.perf_counter()
    try:
        if cell.regime == "head":
            fit = fit_head(lm.model, store, texts, labels, len(task.label_names), answer_ids, options["head"], seed,
                           progress)
        else:
            fit = fit_full(lm.model, lm.tokenizer, texts, labels, len(task.label_names), answer_ids, options["full"],
                           seed, progress)
    except TrainingDiverged as exc:
        raise CellFailed(str(exc), exc.step) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            raise HarnessError(f"cell {cell.stem} ran out of memory: try a smaller --batch-size or "
                               f"--grad-accum with a smaller batch (finished cells are kept)") from exc
        raise
    train_seconds = time.perf_counter() - started
    preds = [Prediction(id=e.id, gold=e.label, probs=tuple(p)) for e, p in zip(test, fit.probs)]
    record = dict(fit.record)
    blocks = _block_parameters(lm)
    lengths = store.token_lengths(texts["train"]) if texts["train"] else []
    dev_lengths = store.token_lengths(texts["dev"]) if texts["dev"] else []
    test_lengths = store.token_lengths(texts["test"])
    trainable = record.pop("trainable_parameters")
    trained_tokens = record.pop("trained_tokens", sum(lengths))  # head on features: each training input once
    if cell.regime == "full":
        train_flops = 6 * blocks * trained_tokens
    else:  # a frozen forward over train + dev inputs, then the trained part (top blocks) forward and backward
        top = record.pop("top_block_parameters", 0)
        train_flops = 2 * (blocks - top) * (sum(lengths) + sum(dev_lengths)) + 6 * top * trained_tokens
    record["cost"] = {
        "trainable_parameters": trainable,
        "train_examples": len(draw.train),
        "dev_examples": len(draw.dev),
        "train_steps": record.pop("train_steps", record["hyperparameters"].get("steps", 0)),
        "train_tokens": trained_tokens,
        "train_wall_time_s": round(train_seconds, 3),
        "train_flops": train_flops,
        "feature_tokens_run": store.tokens_run - tokens_before,
        "inference_flops_per_example": 2 * blocks * sum(test_lengths) / len(test_lengths),
        "stored_bytes_per_task": record.pop("stored_bytes"),
    }
    record["demo_ids"] = [e.id for e in draw.train]
    record["dev_ids"] = [e.id for e in draw.dev]
    return preds, record


def _first_answer_tokens(tokenizer: Any, template: Template) -> list[int]:
    """Each class's first answer token, for a head initialised from the verbalizers."""
    return [tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in answers(template)]


class CellFailed(Exception):
    """Training broke down (NaN/inf loss): the cell is recorded as failed, the run goes on."""

    def __init__(self, reason: str, step: int):
        super().__init__(reason)
        self.step = step


def provenance(record: dict[str, Any], lm: Any, cell: Cell, task: TaskSpec, template: Template,
               resolved: dict[str, Any]) -> dict[str, Any]:
    """Add what identifies the cell and the code, model and data behind it."""
    return {
        "cell": asdict(cell),
        "status": record.pop("status", "ok"),
        **record,
        "task_version": task.version,
        "template_sha256": template.sha256,
        "template_text": template.source,
        "verbalizers": list(template.verbalizers),
        "model": lm.identity if lm is not None else None,
        "device": lm.device if lm is not None else None,
        "seeds": {"sampling": cell.seed, "test_subset": TEST_SUBSET_SEED},
        "harness": harness_provenance(),
        "config": resolved["determining"],
        "invocation": resolved["invocation"],
        "config_hash": resolved["hash"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
