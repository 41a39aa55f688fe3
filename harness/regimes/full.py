"""`full`: every weight of a copy of the base model trained, with a new linear head."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from harness.regimes.features import backbone_of
from harness.regimes.head import init_weights
from harness.regimes.training import (FitResult, LoopConfig, SequenceClassifier, length_grouped_batches,
                                      padding_fraction, train_loop)


@dataclass(frozen=True)
class FullConfig:
    """How `full` trains. The CPU defaults are a small step budget; pass a grid and more steps on a GPU."""

    learning_rates: tuple[float, ...] = (4e-5,)
    max_steps: int = 24
    batch_size: int = 8
    grad_accum: int = 1
    eval_every: int = 8
    patience: int = 2
    warmup_ratio: float = 0.1
    max_tokens: int = 256  # inputs are cut to this many tokens
    pooling: str = "last"
    init: str = "zero"
    gradient_checkpointing: bool = False

    @staticmethod
    def for_device(device: str) -> "FullConfig":
        """The GPU default is the usual grid with a larger budget; CPU keeps to a few minutes."""
        if device == "cuda":
            return FullConfig(learning_rates=(1e-5, 2e-5, 5e-5), max_steps=200, batch_size=16, eval_every=20,
                              patience=3)
        return FullConfig()


def fit_full(model: Any, tokenizer: Any, texts: dict[str, list[str]], labels: dict[str, list[int]], classes: int,
             answer_ids: Sequence[int] | None, cfg: FullConfig, seed: int, progress: bool = False) -> FitResult:
    """Train on texts['train'] for each learning rate, keep the best dev checkpoint, predict texts['test']."""
    device = model.device
    encoded = {split: _encode(tokenizer, texts[split], cfg.max_tokens) for split in texts}
    pad = tokenizer.pad_token_id
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    y_dev = torch.tensor(labels["dev"], device=device)
    best = None
    for lr in cfg.learning_rates:
        classifier = _build(model, answer_ids, classes, cfg)
        params = [p for p in classifier.parameters() if p.requires_grad]

        def make_batch(rows: list[int], split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            ids, mask = _pad([encoded[split][i] for i in rows], pad, device)
            return ids, mask, torch.tensor([labels[split][i] for i in rows], device=device)

        def dev_score(classifier=classifier) -> tuple[float, float]:
            logits = _predict(classifier, encoded["dev"], pad, device, cfg.batch_size, autocast)
            loss = nn.functional.cross_entropy(logits, y_dev).item()
            return (logits.argmax(-1) == y_dev).float().mean().item(), -loss

        loop_cfg = LoopConfig(learning_rate=lr, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                              grad_accum=cfg.grad_accum, warmup_ratio=cfg.warmup_ratio, eval_every=cfg.eval_every,
                              patience=cfg.patience, seed=seed)
        result = train_loop(classifier, params, make_batch, range(len(encoded["train"])),
                            [len(ids) for ids in encoded["train"]], dev_score, loop_cfg, autocast, progress)
        if best is None or result.best_dev > best[0].best_dev:
            best = (result, lr, classifier)
        else:
            del classifier
    result, lr, classifier = best
    classifier.load_state_dict(result.best_state, strict=False)
    logits = _predict(classifier, encoded["test"], pad, device, cfg.batch_size, autocast)
    lengths = [len(ids) for ids in encoded["train"]]
    total = sum(p.numel() for p in classifier.parameters())
    return FitResult(
        probs=torch.softmax(logits, -1).tolist(),
        record={
            "hyperparameters": {"learning_rate": lr, "max_steps": cfg.max_steps, "batch_size": cfg.batch_size,
                                "grad_accum": cfg.grad_accum, "warmup_ratio": cfg.warmup_ratio,
                                "eval_every": cfg.eval_every, "patience": cfg.patience,
                                "max_tokens": cfg.max_tokens, "pooling": cfg.pooling, "init": cfg.init,
                                "gradient_checkpointing": cfg.gradient_checkpointing},
            "selection": {"rule": "best dev checkpoint (accuracy, then loss) over learning rates and evaluations",
                          "grid": list(cfg.learning_rates), "best_step": result.best_step,
                          "dev_accuracy": result.best_dev[0], "dev_loss": -result.best_dev[1],
                          "history": result.history},
            "trainable_parameters": total,
            "stored_bytes": total * next(classifier.parameters()).element_size(),
            "train_steps": result.steps,
            "trained_tokens": result.tokens,
            "train_step_seconds": round(result.step_seconds, 3),
            "padding_fraction": 1 - result.tokens / result.padded_tokens if result.padded_tokens else 0.0,
            "padding_fraction_planned": padding_fraction(lengths, length_grouped_batches(lengths, cfg.batch_size, seed)),
        },
        trained=classifier,
    )


def _build(model: Any, answer_ids: Sequence[int] | None, classes: int, cfg: FullConfig) -> SequenceClassifier:
    """A trainable copy of the backbone (the base model stays untouched) and a new head."""
    backbone = copy.deepcopy(backbone_of(model)).float()  # fp32 master weights; bf16 only under autocast
    backbone.train()
    for p in backbone.parameters():
        p.requires_grad_(True)
    if cfg.gradient_checkpointing and hasattr(backbone, "gradient_checkpointing_enable"):
        backbone.gradient_checkpointing_enable()
    weight, bias = init_weights(model.get_output_embeddings(), answer_ids, model.config.hidden_size, classes, cfg.init)
    head = nn.Linear(weight.shape[1], classes, dtype=torch.float32).to(model.device)
    with torch.no_grad():
        if cfg.init == "verbalizer":
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        else:
            head.weight.normal_(0.0, 0.02)
            head.bias.zero_()

    def body(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return backbone(input_ids=ids, attention_mask=mask).last_hidden_state

    return SequenceClassifier(body, backbone, head, cfg.pooling)


def _encode(tokenizer: Any, texts: list[str], max_tokens: int) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]


def _pad(rows: list[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask


@torch.no_grad()
def _predict(classifier: SequenceClassifier, encoded: list[list[int]], pad: int, device: Any, batch_size: int,
             autocast: Any) -> torch.Tensor:
    """Logits in input order; inputs are run sorted by length so batches carry little padding."""
    was_training = classifier.training
    classifier.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    logits = torch.empty(len(encoded), classifier.head.out_features, device=device)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = _pad([encoded[i] for i in rows], pad, device)
        with autocast():
            logits[rows] = classifier(ids, mask).float()
    classifier.train(was_training)
    return logits
