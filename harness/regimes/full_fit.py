"""How `full` trains: a copy of the whole backbone and a new head, AdamW, best dev checkpoint per learning rate."""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import nn

from harness.backbone import anatomy
from harness.cpu_linear import onednn_linears
from harness.regimes.full import FullSettings
from harness.regimes.features import FeatureStore
from harness.regimes.head_fit import train_probe
from harness.regimes.probe import Probe
from harness.regimes.training import (FitResult, SequenceClassifier, autocast_for, fit_over_learning_rates,
                                      init_weights, length_grouped_batches, padding_fraction, selection_details)


def fit_full(model: Any, tokenizer: Any, store: FeatureStore, texts: dict[str, list[str]],
             labels: dict[str, list[int]], classes: int, answer_ids: Sequence[int] | None, cfg: FullSettings,
             seed: int, progress: bool = False, fresh: bool = False,
             adapter: Callable[[nn.Module], nn.Module] | None = None) -> FitResult:
    """Train on texts['train'] for each learning rate, keep the best dev checkpoint, predict texts['test'].
    fresh: the backbone is a random initialisation of the model's architecture (`scratch`), seeded.
    adapter: wraps the copied backbone so that only its own new weights train (`lora`)."""
    device = model.device
    probe = train_probe(store, texts, labels, classes, cfg, progress) if cfg.head_init == "probe" else None
    encoded = {split: _encode(tokenizer, texts[split], cfg.max_tokens) for split in texts}
    pad = tokenizer.pad_token_id
    autocast = autocast_for(device)

    def build(lr: float) -> tuple[SequenceClassifier, list]:
        classifier = _build(model, answer_ids, classes, cfg, probe, seed if fresh else None, adapter)
        return classifier, [{"params": [p for p in classifier.modules_trained.parameters() if p.requires_grad]},
                            {"params": list(classifier.head.parameters()), "lr": cfg.head_learning_rate}]

    def make_batch(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = _pad([encoded["train"][i] for i in rows], pad, device)
        return ids, mask, torch.tensor([labels["train"][i] for i in rows], device=device)

    lengths = [len(ids) for ids in encoded["train"]]
    result, lr, classifier = fit_over_learning_rates(
        build, make_batch, lengths, lambda c: _predict(c, encoded["dev"], pad, device, cfg.batch_size, autocast),
        torch.tensor(labels["dev"], device=device), cfg, seed, autocast, progress)
    logits = _predict(classifier, encoded["test"], pad, device, cfg.batch_size, autocast)
    trainable = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
    details = selection_details(result, lr, cfg)
    if probe:
        details["selection"]["probe"] = {"C": probe.c, "dev_accuracy": probe.dev_accuracy}
    return FitResult(
        probs=torch.softmax(logits, -1).tolist(),
        details={
            **details,
            "padding_fraction": 1 - result.tokens / result.padded_tokens if result.padded_tokens else 0.0,
            "padding_fraction_planned": padding_fraction(lengths, length_grouped_batches(lengths, cfg.batch_size, seed)),
        },
        trainable_parameters=trainable,
        train_steps=result.steps,
        trained_tokens=result.tokens,
        bytes_per_parameter=next(classifier.parameters()).element_size(),
        trained=classifier,
    )


def _build(model: Any, answer_ids: Sequence[int] | None, classes: int, cfg: FullSettings,
           probe: Probe | None, fresh_seed: int | None = None,
           adapter: Callable[[nn.Module], nn.Module] | None = None) -> SequenceClassifier:
    """A trainable copy of the backbone (the base model stays untouched) and a new head; with a fresh_seed, a
    random initialisation of the same architecture instead of the copy; with an adapter, the copy wrapped so
    that only the adapter's weights train."""
    if fresh_seed is None:
        backbone = copy.deepcopy(anatomy(model).decoder)
    else:
        torch.manual_seed(fresh_seed)
        backbone = type(model)(model.config).to(model.device).get_decoder()  # the model class's own init
    backbone = backbone.float()  # fp32 master weights; bf16 only under autocast
    backbone.train()
    for p in backbone.parameters():
        p.requires_grad_(True)
    if cfg.gradient_checkpointing and hasattr(backbone, "gradient_checkpointing_enable"):
        backbone.gradient_checkpointing_enable()
    if adapter is not None:
        backbone = adapter(backbone)
    weight, bias = init_weights(model.get_output_embeddings(), answer_ids, model.config.hidden_size, classes,
                                cfg.head_init, probe)
    head = nn.Linear(weight.shape[1], classes, dtype=torch.float32).to(model.device)
    with torch.no_grad():
        if cfg.head_init != "zero":
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        else:
            head.weight.normal_(0.0, 0.02)
            head.bias.zero_()

    def body(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state

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
    with onednn_linears(classifier):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = _pad([encoded[i] for i in rows], pad, device)
            with autocast():
                logits[rows] = classifier(ids, mask).float()
    classifier.train(was_training)
    return logits
