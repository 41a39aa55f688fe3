"""`full`: every weight of a copy of the base model trained, with a new linear head.

This module is the regime (settings by device, variant, cost); the training itself is in full_fit.py (torch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.backbone import block_parameters, decoder_parameters
from harness.prompts import first_answer_tokens
from harness.regimes.budget import Budget, resolve_budget
from harness.regimes.options import ALWAYS_HASHED, HEAD_INITS, POOLINGS, check_choice
from harness.regimes.probe import C_GRID
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.truncation import render_splits
from harness.types import Cost, FitData, Template


@dataclass(frozen=True)
class FullSettings(Budget):
    """How `full` trains: the shared budget (budget.py), plus its new head."""

    # --full-head-learning-rate: the new head's own rate (harness 0.2 moved it with the backbone's, so it stayed
    # near its random start; hence hashed even at its default)
    head_learning_rate: float = field(default=1e-3, metadata=ALWAYS_HASHED)
    pooling: str = "last"  # --pooling
    head_init: str = "zero"  # --head-init: zero (N(0, 0.02)), verbalizer, or probe (LP-FT: the trained probe)
    c_grid: tuple[float, ...] = C_GRID  # --head-init probe: the probe's C grid (probe.py)


class Full:
    """A trainable copy of the backbone (the base model is never touched) and a new linear head."""

    name = "full"
    prompting = False
    draws_examples = True
    takes_all_k = True
    adapts_backbone = True  # forgetting measured after training (scratch: no pretrained weights to forget)

    def needs_dev(self, settings: FullSettings, templates: int) -> bool:
        return True  # selects the learning rate and the checkpoint

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[FullSettings]:
        settings = resolve_budget(FullSettings(), options, device.kind, self.name)
        check_choice("pooling", settings.pooling, POOLINGS)
        check_choice("head init", settings.head_init, HEAD_INITS)
        return (settings,)

    def variant(self, settings: FullSettings) -> str:
        return f"{settings.head_init}-init" if settings.head_init != "zero" else ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: FullSettings, seed: int,
            progress: bool) -> RegimeRun:
        return self.train(lm, shared, template, data, settings, seed, progress, fresh=False)

    def train(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: FullSettings, seed: int,
              progress: bool, fresh: bool, adapter: Any = None) -> RegimeRun:
        """Train a copy of the backbone (fresh: a random initialisation of its architecture; adapter: only the
        adapter's weights in it) and a new head."""
        from harness.forgetting import forgetting_details
        from harness.regimes.full_fit import fit_full

        texts, labels = render_splits(template, data, lm.tokenizer, settings.max_tokens)
        started = time.perf_counter()
        fit = fit_full(lm.model, lm.tokenizer, shared.features, texts, labels, len(data.label_names),
                       first_answer_tokens(lm.tokenizer, template), settings, seed, progress, fresh=fresh,
                       adapter=adapter)
        seconds = time.perf_counter() - started
        blocks = block_parameters(lm.model)
        test_tokens = sum(shared.features.token_lengths(texts["test"], settings.max_tokens))
        cost = Cost(
            trainable_parameters=fit.trainable_parameters, train_examples=len(data.train),
            dev_examples=len(data.dev), train_steps=fit.train_steps, train_tokens=fit.trained_tokens or 0,
            train_wall_time_s=round(seconds, 3), train_flops=6 * blocks * (fit.trained_tokens or 0),
            inference_flops_per_example=2 * blocks * test_tokens / len(data.test),
            # what was trained (the whole copy; an adapter and the head alone), in the dtype it was trained in
            stored_bytes_per_task=fit.trainable_parameters * fit.bytes_per_parameter,
            # full and scratch train everything; an adapter comes on top of the frozen decoder
            total_parameters=fit.trainable_parameters + (decoder_parameters(lm.model) if adapter else 0),
        )
        details = {**fit.details, "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev]}
        if self.adapts_backbone:
            details.update(forgetting_details(shared, lm, data.task, fit.trained.modules_trained, progress))
        return RegimeRun(fit.predictions(data.test), cost, details)
