"""`head`: the backbone frozen, a new linear head trained on its features — the standard probe — or, with
`--unfreeze-top N`, the top N blocks and the final norm trained with it on the cached hidden states that enter them
(a composition: trained.py with sources.TopBlocks and a new head)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from harness.backbone import block_parameters, decoder_parameters
from harness.regimes.budget import AdaptingBudget, Budget
from harness.regimes.costs import training_cost, transformer_flops
from harness.regimes.objectives import NewHead, c_grid_setting, head_init_setting, pooling_setting
from harness.regimes.options import redefault, resolve_settings, setting
from harness.regimes.probe import train_probe
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.regimes.sources import TopBlocks
from harness.regimes.trained import TrainedRegime, always
from harness.truncation import render_splits
from harness.types import FitData, Prediction, Template

log = logging.getLogger(__name__)
FEATURE_BYTES = 4  # the trained head (and top blocks) are kept in fp32


@dataclass(frozen=True)
class HeadSettings(AdaptingBudget):
    """How `head` trains. N = 0 (the default): only the linear head, the probe, on cached pooled features (its C
    grid); N > 0: the top N blocks too, by the one training loop on the budget fields."""

    unfreeze_top: int = setting(0, "also train the top N blocks and the final norm; several (0,1,2,4) give one "
                                   "variant each, the freezing-depth curve", minimum=0, axis=True)
    pooling: str = pooling_setting()
    head_init: str = head_init_setting()  # N > 0
    # harness 0.2 trained an L2 grid by Adam instead of this probe: hashed always
    c_grid: tuple[float, ...] = c_grid_setting(hashed="always")
    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (1e-4,))
    max_steps: int = redefault(Budget, "max_steps", 40)
    batch_size: int = redefault(Budget, "batch_size", 16)
    eval_every: int = redefault(Budget, "eval_every", 10)
    patience: int = redefault(Budget, "patience", 3)


# the top blocks' head starts at exact zeros (the probe's convex start), not full's small random one
TOP_BLOCKS = TrainedRegime("head", HeadSettings, TopBlocks(), always(NewHead(zero_std=0.0)))


class Head:
    """A new classifier on the frozen backbone's last hidden state (or the top N blocks trained with it)."""

    name = "head"
    settings = HeadSettings
    prompting = False
    draws_examples = True
    takes_all_k = True
    adapts_backbone = True  # its top N blocks (N = 0: nothing, and forgetting must measure exactly 0)

    def needs_dev(self, settings: HeadSettings, templates: int) -> bool:
        return True  # selects the probe's C (or, with top blocks, the learning rate and checkpoint)

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[HeadSettings, ...]:
        variants = []
        for settings in resolve_settings(HeadSettings(), options, self.name):
            if settings.unfreeze_top == 0 and settings.head_init != "zero":
                log.warning("head: --head-init %s has no effect without --unfreeze-top (the probe is a convex fit: "
                            "its optimum does not depend on where it starts)", settings.head_init)
                settings = replace(settings, head_init="zero")
            if settings.unfreeze_top == 0 and settings.mitigation != "none":
                log.warning("head: --mitigation %s has no effect without --unfreeze-top (the probe changes no "
                            "backbone weight)", settings.mitigation)
                settings = replace(settings, mitigation="none")
            variants.append(settings)
        return tuple(variants)

    def variant(self, settings: HeadSettings) -> str:
        parts = [f"top{settings.unfreeze_top}"] if settings.unfreeze_top else []
        if settings.pooling != "last":
            parts.append(f"{settings.pooling}-pool")
        if settings.head_init != "zero":
            parts.append(f"{settings.head_init}-init")
        if settings.mitigation != "none":
            parts.append(settings.mitigation)
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: HeadSettings,
            progress: bool) -> RegimeRun:
        if settings.unfreeze_top:
            return TOP_BLOCKS.run(lm, shared, template, data, settings, progress)
        features, classes = shared.features, len(data.label_names)
        texts, labels = render_splits(template, data, lm.tokenizer, settings.max_tokens, lm.max_length)
        tokens_before, started = features.tokens_run, time.perf_counter()
        probe = train_probe(features, texts, labels, classes, settings, progress)
        test = features.pooled(texts["test"], settings.pooling, settings.max_tokens, settings.batch_size, progress)
        probs = probe.probabilities(test.numpy()).tolist()
        seconds = time.perf_counter() - started
        blocks = block_parameters(lm.model)
        length = {split: sum(features.token_lengths(texts[split], settings.max_tokens)) for split in texts}
        trainable = classes * (probe.model.coef_.shape[1] + 1)  # one weight row and bias per class
        cost = training_cost(
            data, trainable=trainable, total=decoder_parameters(lm.model) + classes * (lm.model.config.hidden_size + 1),
            stored_bytes=trainable * FEATURE_BYTES, steps=len(settings.c_grid), seconds=seconds,
            train_tokens=length["train"],
            # a frozen forward over train + dev inputs; the head itself is negligible
            train_flops=transformer_flops(blocks, 0, 0, length["train"] + length["dev"]),
            inference_flops_per_example=2 * blocks * length["test"] / len(data.test),
            feature_tokens_run=features.tokens_run - tokens_before)
        details = {"selection": probe.selection(f"standardised features, L-BFGS logistic regression; best dev "
                                                f"{settings.select_metric}, then dev loss, then the smaller C"),
                   "warnings": probe.warnings, "train_ids": [e.id for e in data.train],
                   "dev_ids": [e.id for e in data.dev]}
        predictions = [Prediction(id=x.id, gold=None, probs=tuple(p)) for x, p in zip(data.test, probs)]
        return RegimeRun(predictions, cost, details)
