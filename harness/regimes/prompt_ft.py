"""`prompt-ft`: prompt-based fine-tuning (LM-BFF). Every weight of a copy of the LM is trained so that, after the
template, the class's answer gets the mass: cross-entropy over the answers' summed log-likelihoods, the very
scores zero-shot compares. The trained copy then scores the test set exactly as zero-shot does.

This module is the regime (settings, variant, cost); the training itself is in prompt_ft_fit.py (torch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from harness.backbone import block_parameters
from harness.regimes.budget import Budget, resolve_budget
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import Cost, FitData, Template


@dataclass(frozen=True)
class PromptFtSettings(Budget):
    """How `prompt-ft` trains: the budget `full` has (budget.py), no new head."""


class PromptFt:
    """A trainable copy of the whole LM, trained on its own answer scores; no new parameters."""

    name = "prompt-ft"
    prompting = False  # it trains: a fine-tuning regime, compared with few-shot on the learning curves
    draws_examples = True
    takes_all_k = True
    adapts_backbone = True

    def needs_dev(self, settings: PromptFtSettings, templates: int) -> bool:
        return True  # selects the learning rate and the checkpoint

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[PromptFtSettings]:
        return (resolve_budget(PromptFtSettings(), options, device.kind, "prompt_ft"),)

    def variant(self, settings: PromptFtSettings) -> str:
        return ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: PromptFtSettings,
            seed: int, progress: bool) -> RegimeRun:
        return self.train(lm, shared, template, data, settings, seed, progress)

    def train(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: Any, seed: int,
              progress: bool, adapter: Any = None) -> RegimeRun:
        """Train a copy of the LM on its answer scores (adapter: only the adapter's weights in it)."""
        from harness.forgetting import forgetting_details
        from harness.regimes.prompt_ft_fit import fit_prompt_ft

        started = time.perf_counter()
        fit = fit_prompt_ft(lm, template, data, settings, seed, progress, adapter)
        seconds = time.perf_counter() - started
        blocks = block_parameters(lm.model)
        cost = Cost(
            trainable_parameters=fit.trainable_parameters, train_examples=len(data.train),
            dev_examples=len(data.dev), train_steps=fit.train_steps, train_tokens=fit.trained_tokens or 0,
            train_wall_time_s=round(seconds, 3), train_flops=6 * blocks * (fit.trained_tokens or 0),
            # scored as zero-shot: one uncached forward over each test prompt
            inference_flops_per_example=2 * blocks * sum(p.prompt_tokens for p in fit.scored) / len(data.test),
            stored_bytes_per_task=fit.trainable_parameters * fit.bytes_per_parameter,
            # the whole LM trains; an adapter comes on top of the frozen LM (its decoder and any untied output layer)
            total_parameters=fit.trainable_parameters + (_lm_parameters(lm.model) if adapter else 0),
        )
        details = {**fit.details, "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev],
                   **forgetting_details(shared, lm, data.task, fit.trained.modules_trained, progress)}
        return RegimeRun(fit.predictions(data.test), cost, details)


def _lm_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
