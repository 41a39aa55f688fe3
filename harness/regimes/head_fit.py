"""How `head` trains: a linear head on cached features, or the top N blocks too on cached hidden states."""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from harness.backbone import anatomy, top_blocks_only
from harness.errors import HarnessError
from harness.regimes.features import FeatureStore
from harness.regimes.head import HeadSettings
from harness.regimes.probe import Probe, fit_probe
from harness.regimes.training import (FitResult, LoopConfig, SequenceClassifier, budget_warnings, init_weights,
                                      train_loop)


def fit_head(model: Any, store: FeatureStore, texts: dict[str, list[str]], labels: dict[str, list[int]],
             classes: int, answer_ids: Sequence[int] | None, cfg: HeadSettings, seed: int,
             progress: bool = False) -> FitResult:
    """Train on texts['train'], select on texts['dev'], predict texts['test'] (whose labels are never read)."""
    if cfg.unfreeze_top > 0:
        return _fit_top(model, store, texts, labels, classes, answer_ids, cfg, seed, progress)
    probe = train_probe(store, texts, labels, classes, cfg, progress)
    test = store.pooled(texts["test"], cfg.pooling, cfg.max_tokens, cfg.batch_size, progress).numpy()
    return FitResult(
        probs=probe.probabilities(test).tolist(),
        details={"selection": probe.selection("standardised features, L-BFGS logistic regression; best dev "
                                              "accuracy, then dev loss, then the smaller C"),
                 "warnings": probe.warnings},
        trainable_parameters=classes * (probe.model.coef_.shape[1] + 1),  # one weight row and bias per class
        train_steps=len(cfg.c_grid),
    )


def train_probe(store: FeatureStore, texts: dict[str, list[str]], labels: dict[str, list[int]], classes: int,
                cfg: Any, progress: bool = False) -> Probe:
    """The probe on the cached pooled features of train, C chosen on dev (cfg: pooling, max_tokens, c_grid...)."""
    feats = {split: store.pooled(texts[split], cfg.pooling, cfg.max_tokens, cfg.batch_size, progress).numpy()
             for split in ("train", "dev")}
    return fit_probe(feats["train"], labels["train"], feats["dev"], labels["dev"], classes, cfg.c_grid)


def _score(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, -loss): the selection key, higher is better."""
    loss = nn.functional.cross_entropy(logits.float(), y).item()
    accuracy = (logits.argmax(-1) == y).float().mean().item()
    return accuracy, -loss if math.isfinite(loss) else -math.inf


def _fit_top(model: Any, store: FeatureStore, texts: dict[str, list[str]], labels: dict[str, list[int]],
             classes: int, answer_ids: Sequence[int] | None, cfg: HeadSettings, seed: int, progress: bool) -> FitResult:
    """Top N blocks + final norm + head trained on the cached hidden states entering those blocks."""
    n = cfg.unfreeze_top
    parts = anatomy(model)
    if n > len(parts.blocks):
        raise HarnessError(f"--unfreeze-top {n} exceeds the model's {len(parts.blocks)} blocks")
    entering = {split: store.entering_top(texts[split], n, cfg.max_tokens, cfg.batch_size, progress)
                for split in texts}
    device = model.device
    probe = train_probe(store, texts, labels, classes, cfg, progress) if cfg.head_init == "probe" else None
    best = None
    for lr in cfg.top_learning_rates:
        trained = nn.ModuleDict({"layers": copy.deepcopy(nn.ModuleList(parts.blocks[-n:])),
                                 "norm": copy.deepcopy(parts.final_norm)}).float()  # fp32 weights to train
        weight, bias = init_weights(model.get_output_embeddings(), answer_ids, parts.hidden_size, classes,
                                    cfg.head_init, probe)
        head = nn.Linear(weight.shape[1], classes).to(device)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)

        def body(hidden: torch.Tensor, mask: torch.Tensor, trained=trained) -> torch.Tensor:
            with top_blocks_only(parts, trained["layers"], trained["norm"]):
                return parts.decoder(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state

        classifier = SequenceClassifier(body, trained, head, cfg.pooling).to(device)
        params = [p for p in classifier.parameters()]
        for p in params:
            p.requires_grad_(True)
        batch = _hidden_batcher(entering, labels, device)
        loop_cfg = LoopConfig(learning_rate=lr, max_steps=cfg.top_steps, batch_size=cfg.batch_size, seed=seed,
                              eval_every=max(1, cfg.top_steps // 4))
        y_dev = torch.tensor(labels["dev"], device=device)
        dev_score = lambda: _score(_predict_hidden(classifier, entering["dev"], device, cfg.batch_size), y_dev)
        result = train_loop(classifier, params, lambda rows: batch("train", rows), range(len(texts["train"])),
                            [len(h) for h in entering["train"]], dev_score, loop_cfg, contextlib.nullcontext, progress)
        if best is None or result.best_dev > best[0].best_dev:
            best = (result, lr, classifier)
    result, lr, classifier = best
    classifier.load_state_dict(result.best_state, strict=False)
    logits = _predict_hidden(classifier, entering["test"], device, cfg.batch_size)
    trainable = sum(p.numel() for p in classifier.parameters())
    return FitResult(
        probs=torch.softmax(logits.float(), -1).tolist(),
        details={"selection": {"rule": "best dev checkpoint (accuracy, then loss) over top_learning_rates and "
                                       "evaluations", "chosen": {"top_learning_rate": lr},
                               "best_step": result.best_step, "dev_accuracy": result.best_dev[0],
                               "dev_loss": -result.best_dev[1], "history": result.history},
                 "warnings": budget_warnings("top learning rate", cfg.top_learning_rates, lr, result.best_step,
                                             result.steps, cfg.top_steps)},
        trainable_parameters=trainable,
        train_steps=result.steps,
        trained_tokens=result.tokens,
        top_block_parameters=sum(p.numel() for p in classifier.modules_trained.parameters()),
        trained=classifier,
    )


def _hidden_batcher(entering: dict[str, list[torch.Tensor]], labels: dict[str, list[int]], device: Any):
    def make(split: str, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, mask = _pad_hidden([entering[split][i] for i in rows], device)
        return hidden, mask, torch.tensor([labels[split][i] for i in rows], device=device)

    return make


def _pad_hidden(states: list[torch.Tensor], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in states)
    hidden = torch.zeros(len(states), width, states[0].shape[1], dtype=torch.float32)
    mask = torch.zeros(len(states), width, dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return hidden.to(device), mask.to(device)


@torch.no_grad()
def _predict_hidden(classifier: SequenceClassifier, states: list[torch.Tensor], device: Any,
                    batch_size: int) -> torch.Tensor:
    """Logits for cached hidden states, in order."""
    logits = []
    for start in range(0, len(states), batch_size):
        hidden, mask = _pad_hidden(states[start : start + batch_size], device)
        logits.append(classifier(hidden, mask).float())
    return torch.cat(logits)
