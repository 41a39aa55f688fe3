"""`head`: the backbone frozen, a new linear head trained on its features; optionally its top N blocks too.

This module is the regime (settings, variant, cost); the training itself is in head_fit.py (torch).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from harness.backbone import block_parameters, decoder_parameters
from harness.errors import HarnessError
from harness.prompts import first_answer_tokens
from harness.regimes.options import ALWAYS_HASHED, HEAD_INITS, POOLINGS, check_at_least, check_choice, overlay
from harness.regimes.probe import C_GRID
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.truncation import render_splits
from harness.types import Cost, FitData, Template

log = logging.getLogger(__name__)
FEATURE_BYTES = 4  # the trained head (and top blocks) are kept in fp32


@dataclass(frozen=True)
class HeadSettings:
    """How `head` trains. With unfreeze_top = 0 only the linear head learns, on cached pooled features."""

    unfreeze_top: int = 0  # --unfreeze-top: top transformer blocks (and the final norm) trained with the head
    pooling: str = "last"  # --pooling: "last" non-pad token or "mean" over tokens
    head_init: str = "zero"  # --head-init (N > 0): "verbalizer" (the LM head's answer-token rows) or "probe"
    max_tokens: int = 256  # --max-tokens: inputs are cut to this many tokens, inside the input field
    # N = 0: the probe's C grid (probe.py), selected on dev; harness 0.2 trained an L2 grid by Adam instead
    c_grid: tuple[float, ...] = field(default=C_GRID, metadata=ALWAYS_HASHED)
    top_learning_rates: tuple[float, ...] = (1e-4,)  # N > 0, selected on dev
    top_steps: int = 40  # N > 0
    batch_size: int = 16  # --batch-size: feature extraction, and training batches when N > 0


class Head:
    """A new classifier on the frozen backbone's last hidden state (or the top N blocks trained with it)."""

    name = "head"
    prompting = False
    draws_examples = True
    takes_all_k = True
    adapts_backbone = True  # its top N blocks (N = 0: nothing, and forgetting must measure exactly 0)

    def needs_dev(self, settings: HeadSettings, templates: int) -> bool:
        return True  # selects the probe's C (or, with top blocks, the learning rate and checkpoint)

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[HeadSettings, ...]:
        depths = options.get("unfreeze_top")
        depths = [depths] if isinstance(depths, int) else depths or [0]  # a list: the freezing-depth curve
        return tuple(self._resolve_one({**options, "unfreeze_top": n}) for n in depths)

    def _resolve_one(self, options: Mapping[str, Any]) -> HeadSettings:
        settings = overlay(HeadSettings(), options, self.name)
        check_choice("pooling", settings.pooling, POOLINGS)
        check_choice("head init", settings.head_init, HEAD_INITS)
        check_at_least("--unfreeze-top", settings.unfreeze_top, 0)
        check_at_least("--batch-size", settings.batch_size, 1)
        check_at_least("--max-tokens", settings.max_tokens, 8)
        if not settings.c_grid:
            raise HarnessError("head: the C grid needs at least one value")
        if settings.unfreeze_top == 0 and settings.head_init != "zero":
            log.warning("head: --head-init %s has no effect without --unfreeze-top (the probe is a convex fit: its "
                        "optimum does not depend on where it starts)", settings.head_init)
            settings = replace(settings, head_init="zero")
        return settings

    def variant(self, settings: HeadSettings) -> str:
        parts = [f"top{settings.unfreeze_top}"] if settings.unfreeze_top else []
        if settings.pooling != "last":
            parts.append(f"{settings.pooling}-pool")
        if settings.head_init != "zero":
            parts.append(f"{settings.head_init}-init")
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: HeadSettings, seed: int,
            progress: bool) -> RegimeRun:
        from harness.forgetting import forgetting_details
        from harness.regimes.head_fit import fit_head

        features = shared.features
        texts, labels = render_splits(template, data, lm.tokenizer, settings.max_tokens)
        tokens_before = features.tokens_run
        started = time.perf_counter()
        fit = fit_head(lm.model, features, texts, labels, len(data.label_names),
                       first_answer_tokens(lm.tokenizer, template), settings, seed, progress)
        seconds = time.perf_counter() - started
        blocks = block_parameters(lm.model)
        length = {split: sum(features.token_lengths(texts[split], settings.max_tokens)) for split in texts}
        trained_tokens = fit.trained_tokens if fit.trained_tokens is not None else length["train"]
        top = fit.top_block_parameters
        cost = Cost(
            trainable_parameters=fit.trainable_parameters, train_examples=len(data.train),
            dev_examples=len(data.dev), train_steps=fit.train_steps, train_tokens=trained_tokens,
            train_wall_time_s=round(seconds, 3),
            # a frozen forward over train + dev inputs, then the trained part (top blocks) forward and backward
            train_flops=2 * (blocks - top) * (length["train"] + length["dev"]) + 6 * top * trained_tokens,
            feature_tokens_run=features.tokens_run - tokens_before,
            inference_flops_per_example=2 * blocks * length["test"] / len(data.test),
            stored_bytes_per_task=fit.trainable_parameters * FEATURE_BYTES,
            total_parameters=decoder_parameters(lm.model) + len(data.label_names) * (lm.model.config.hidden_size + 1),
        )
        details = {**fit.details, "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev],
                   **forgetting_details(shared, lm, data.task,
                                        fit.trained.modules_trained if fit.trained is not None else None, progress)}
        return RegimeRun(fit.predictions(data.test), cost, details)
