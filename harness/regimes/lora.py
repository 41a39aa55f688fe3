"""`lora`: low-rank adapters (peft) on the projections of a copy of the backbone, plus a new head; the backbone's
own weights stay frozen. `full`'s data, dev selection and budget rules; it stores only the adapter and the head.

This module is the regime (settings, variant, cost); peft is imported by lora_fit.py when a cell trains.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Mapping

from harness.regimes.budget import CUDA_BUDGET, resolve_budget
from harness.regimes.full import Full, FullSettings
from harness.regimes.options import HEAD_INITS, POOLINGS, check_at_least, check_choice
from harness.regimes.prompt_ft import PromptFt
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import FitData, Template

# adapters start at zero and take larger steps than whole weights
LORA_CUDA_BUDGET = {**CUDA_BUDGET, "learning_rates": (1e-4, 3e-4, 1e-3, 3e-3)}


@dataclass(frozen=True)
class LoraSettings(FullSettings):
    """`full`'s settings, plus the adapter's rank, scale and target modules."""

    learning_rates: tuple[float, ...] = (1e-3,)  # --lora-learning-rates: selected on dev
    rank: int = 8  # --lora-rank
    alpha: int = 16  # --lora-alpha: the update is scaled by alpha / rank
    # --lora-targets: module names (suffixes) in the blocks; "all-linear": every linear projection (peft's choice)
    targets: tuple[str, ...] = ("all-linear",)
    # --lora-scoring: "head" (a new linear head, as full) or "prompt" (no head: the adapted LM's answer scores after
    # the template, trained and predicted as prompt-ft does)
    scoring: str = "head"


class Lora(Full):
    """`full` with the copy's weights frozen and low-rank adapters trained beside them."""

    name = "lora"

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[LoraSettings]:
        settings = resolve_budget(LoraSettings(), options, device.kind, self.name, LORA_CUDA_BUDGET)
        check_choice("pooling", settings.pooling, POOLINGS)
        check_choice("head init", settings.head_init, HEAD_INITS)
        check_at_least("--lora-rank", settings.rank, 1)
        check_at_least("--lora-alpha", settings.alpha, 1)
        check_choice("lora scoring", settings.scoring, ("head", "prompt"))
        return (replace(settings, targets=tuple(settings.targets)),)

    def variant(self, settings: LoraSettings) -> str:
        parts = [] if settings.scoring == "head" else [settings.scoring]
        parts += [] if settings.rank == LoraSettings.rank else [f"r{settings.rank}"]
        if settings.targets != LoraSettings.targets:
            parts.append("-".join(settings.targets))
        if settings.head_init != "zero":
            parts.append(f"{settings.head_init}-init")
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: LoraSettings, seed: int,
            progress: bool) -> RegimeRun:
        from harness.regimes.lora_fit import add_lora

        if settings.scoring == "prompt":
            return PromptFt().train(lm, shared, template, data, settings, seed, progress,
                                    adapter=partial(add_lora, settings=settings))
        return self.train(lm, shared, template, data, settings, seed, progress, fresh=False,
                          adapter=partial(add_lora, settings=settings))
