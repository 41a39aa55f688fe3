"""`full`: every weight of a copy of the base model trained, with a new linear head.

This module is the regime (settings by device, variant, cost); the training itself is in full_fit.py (torch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.backbone import block_parameters, decoder_parameters
from harness.prompts import first_answer_tokens, render_splits
from harness.regimes.options import (ALWAYS_HASHED, HEAD_INITS, NOT_HASHED, POOLINGS, check_at_least,
                                     check_choice, overlay)
from harness.regimes.probe import C_GRID
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import Cost, FitData, Template

DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class FullSettings:
    """How `full` trains. The CPU defaults are a small step budget; the CUDA defaults a grid and more steps."""

    learning_rates: tuple[float, ...] = (4e-5,)  # --full-learning-rates: the backbone's, selected on dev
    # --full-head-learning-rate: the new head's own rate (harness 0.2 moved it with the backbone's, so it stayed
    # near its random start; hence hashed even at its default)
    head_learning_rate: float = field(default=1e-3, metadata=ALWAYS_HASHED)
    max_steps: int = 24  # --full-max-steps: optimizer steps per learning rate (early stopping may end sooner)
    batch_size: int = 8  # --batch-size: examples per micro-batch
    grad_accum: int = 1  # --grad-accum: micro-batches per optimizer step
    eval_every: int = 8  # optimizer steps between dev checks
    patience: int = 2  # dev checks without improvement before stopping
    warmup_ratio: float = 0.1
    max_tokens: int = 256  # --max-tokens: inputs are cut to this many tokens, inside the input field
    pooling: str = "last"  # --pooling
    head_init: str = "zero"  # --head-init: zero (N(0, 0.02)), verbalizer, or probe (LP-FT: the trained probe)
    c_grid: tuple[float, ...] = C_GRID  # --head-init probe: the probe's C grid (probe.py)
    gradient_checkpointing: bool = field(default=False, metadata=NOT_HASHED)  # --gradient-checkpointing
    defaults: str = field(default="cpu", metadata=NOT_HASHED)  # --full-defaults: the device kind whose defaults

    @staticmethod
    def for_device(kind: str) -> "FullSettings":
        """The GPU default is the usual grid with a larger budget; CPU keeps to a few minutes."""
        if kind == "cuda":  # LM-BFF's budget (1000 steps, dev every 100) with a grid reaching 1e-4
            return FullSettings(learning_rates=(1e-5, 2e-5, 5e-5, 1e-4), max_steps=1000, batch_size=8,
                                eval_every=50, patience=5, defaults="cuda")
        return FullSettings()


class Full:
    """A trainable copy of the backbone (the base model is never touched) and a new linear head."""

    name = "full"
    prompting = False
    draws_examples = True
    takes_all_k = True

    def needs_dev(self, settings: FullSettings, templates: int) -> bool:
        return True  # selects the learning rate and the checkpoint

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[FullSettings]:
        kind = options.get("full_defaults") or device.kind
        check_choice("--full-defaults", kind, DEVICE_KINDS)
        settings = overlay(replace(FullSettings.for_device(kind), defaults=kind), options, self.name)
        check_choice("pooling", settings.pooling, POOLINGS)
        check_choice("head init", settings.head_init, HEAD_INITS)
        if not settings.learning_rates:
            raise HarnessError("--full-learning-rates needs at least one learning rate")
        for flag, value in (("--full-max-steps", settings.max_steps), ("--batch-size", settings.batch_size),
                            ("--grad-accum", settings.grad_accum), ("--max-tokens", settings.max_tokens)):
            check_at_least(flag, value, 8 if flag == "--max-tokens" else 1)
        return (settings,)

    def variant(self, settings: FullSettings) -> str:
        return f"{settings.head_init}-init" if settings.head_init != "zero" else ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: FullSettings, seed: int,
            progress: bool) -> RegimeRun:
        from harness.regimes.full_fit import fit_full

        texts, labels = render_splits(template, data)
        started = time.perf_counter()
        fit = fit_full(lm.model, lm.tokenizer, shared.features, texts, labels, len(data.label_names),
                       first_answer_tokens(lm.tokenizer, template), settings, seed, progress)
        seconds = time.perf_counter() - started
        blocks = block_parameters(lm.model)
        test_tokens = sum(shared.features.token_lengths(texts["test"], settings.max_tokens))
        cost = Cost(
            trainable_parameters=fit.trainable_parameters, train_examples=len(data.train),
            dev_examples=len(data.dev), train_steps=fit.train_steps, train_tokens=fit.trained_tokens or 0,
            train_wall_time_s=round(seconds, 3), train_flops=6 * blocks * (fit.trained_tokens or 0),
            inference_flops_per_example=2 * blocks * test_tokens / len(data.test),
            # the whole trained copy, in the dtype it was trained in
            stored_bytes_per_task=fit.trainable_parameters * fit.bytes_per_parameter,
            total_parameters=decoder_parameters(lm.model) + len(data.label_names) * (lm.model.config.hidden_size + 1),
        )
        details = {**fit.details, "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev]}
        return RegimeRun(fit.predictions(data.test), cost, details)
