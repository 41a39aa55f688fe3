"""`scratch`: the base model's architecture and tokenizer, randomly initialised, trained like `full` on the same k
examples (its own learning-rate grid, the same budget). Pretrained regime minus scratch is the transfer gain.

This module is the regime (settings, variant, cost); the training is full_fit.py's with a fresh backbone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping

from harness.regimes.budget import CUDA_BUDGET, resolve_budget
from harness.regimes.full import Full, FullSettings
from harness.regimes.options import POOLINGS, check_choice
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import FitData, Template

log = logging.getLogger(__name__)
# random weights take larger steps than pretrained ones
SCRATCH_CUDA_BUDGET = {**CUDA_BUDGET, "learning_rates": (1e-4, 3e-4, 1e-3)}


@dataclass(frozen=True)
class ScratchSettings(FullSettings):
    """`full`'s settings, with a learning rate for random weights; the head starts from zeros-like N(0, 0.02)."""

    learning_rates: tuple[float, ...] = (3e-4,)  # --scratch-learning-rates: selected on dev


class Scratch(Full):
    """`full` from a random initialisation of the same architecture: no transfer."""

    name = "scratch"
    adapts_backbone = False  # random weights: nothing pretrained to forget

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[ScratchSettings]:
        settings = resolve_budget(ScratchSettings(), options, device.kind, self.name, SCRATCH_CUDA_BUDGET)
        check_choice("pooling", settings.pooling, POOLINGS)
        if settings.head_init != "zero":
            log.warning("scratch: --head-init %s is ignored (the answer-token rows and the probe come from the "
                        "pretrained model)", settings.head_init)
            settings = replace(settings, head_init="zero")
        return (settings,)

    def variant(self, settings: ScratchSettings) -> str:
        return ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: ScratchSettings, seed: int,
            progress: bool) -> RegimeRun:
        return self.train(lm, shared, template, data, settings, seed, progress, fresh=True)
