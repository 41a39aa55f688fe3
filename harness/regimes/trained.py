"""A trained regime, assembled: a backbone source (sources.py) × an objective (objectives.py) × the shared budget
(budget.py), trained by the one loop (training.py). `full`, `scratch`, `lora`, `lora (prompt)`, `prompt-ft`,
`ia3` and `head --unfreeze-top N` are each one such composition; no regime subclasses another's implementation.

    full       = TrainedRegime("full", FullSettings, PRETRAINED, always(NewHead(0.02)))
    prompt-ft  = TrainedRegime("prompt-ft", PromptFtSettings, PRETRAINED, always(ANSWER_SCORES))

Importing this module does not import torch: `run` does, when a cell trains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from harness.regimes.budget import CUDA_BUDGET
from harness.regimes.costs import training_cost, transformer_flops
from harness.regimes.options import resolve_settings
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import FitData, Template


def always(objective: Any) -> Callable[[Any], Any]:
    """An objective that does not depend on the settings."""
    return lambda settings: objective


@dataclass(frozen=True)
class TrainedRegime:
    """One trained regime: where its backbone comes from, what it learns to predict, its settings."""

    name: str
    settings: type  # a frozen dataclass with the Budget's fields (and the objective's: pooling, head_init, ...)
    source: Any  # sources.Backbone or sources.TopBlocks
    objective: Callable[[Any], Any]  # settings -> objectives.NewHead or objectives.ANSWER_SCORES
    names: Callable[[Any], str] = lambda settings: ""  # the regime's own name for settings that change results
    cuda: Mapping[str, Any] = field(default_factory=lambda: CUDA_BUDGET)  # the CUDA budget's defaults
    adapts_backbone: bool = True  # trains on top of the pretrained weights (forgetting is measured)
    prompting: bool = False
    draws_examples: bool = True
    takes_all_k: bool = True

    def needs_dev(self, settings: Any, templates: int) -> bool:
        return True  # selects the learning rate and the checkpoint

    def variant(self, settings: Any) -> str:
        """The regime's own variant name, then the forgetting mitigation's ('l2sp')."""
        mitigation = getattr(settings, "mitigation", "none")  # regimes that change no base weight have none
        parts = [self.names(settings), "" if mitigation == "none" else mitigation]
        return "-".join(p for p in parts if p)

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[Any, ...]:
        return resolve_settings(self.settings(), options, self.name, {"cuda": self.cuda}, device.kind)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: Any,
            progress: bool) -> RegimeRun:
        from harness.backbone import block_parameters
        from harness.models import autocast_for
        from harness.regimes.mitigation import penalty_maker
        from harness.regimes.training import fit_over_learning_rates, selection_details

        objective, source = self.objective(settings), self.source
        started, features_before = time.perf_counter(), shared.features.tokens_run
        prepared = objective.prepare(lm, shared, template, data, settings, source, progress)

        def build(learning_rate: float) -> tuple[Any, list[dict[str, Any]]]:
            module = source.build(lm.model, objective.whole_lm, settings, data.seed)
            return objective.wrap(lm, source, module, prepared, template, settings, len(data.label_names))

        fit = fit_over_learning_rates(build, prepared.make_batch, prepared.lengths, prepared.dev_logits,
                                      prepared.dev_labels, settings, data.seed, autocast_for(lm.model.device), progress,
                                      penalty_maker(settings, lm, source, data.seed))
        predictions, tokens_per_example = objective.predict(lm, template, fit.model, prepared, data, settings, progress)
        module = fit.model.modules_trained
        parameters = list(fit.model.parameters())
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        blocks = block_parameters(lm.model)
        cost = training_cost(
            data, trainable=trainable,
            total=sum(p.numel() for p in parameters) + source.frozen_parameters(lm.model, module),
            # what was trained (the whole copy; an adapter and the head alone), in the dtype it was trained in
            stored_bytes=trainable * parameters[0].element_size(), steps=fit.result.steps,
            seconds=time.perf_counter() - started, train_tokens=fit.result.tokens,
            train_flops=transformer_flops(blocks, source.trained_block_parameters(lm.model, module),
                                          fit.result.tokens, prepared.frozen_tokens),
            inference_flops_per_example=2 * blocks * tokens_per_example,
            feature_tokens_run=shared.features.tokens_run - features_before)
        details = {**selection_details(fit, settings, prepared.lengths, data.seed),
                   "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev]}
        if prepared.probe is not None:
            details["selection"]["probe"] = {"C": prepared.probe.c, "dev_accuracy": prepared.probe.dev_accuracy}
        head_on = None
        if not objective.whole_lm and not source.reads_features:  # a new head on the whole backbone
            head_on = lambda other, examples: objective.head_on(other, template, fit.model, settings, examples)  # noqa: E731
        return RegimeRun(predictions, cost, details,
                         deployed=lambda model: source.deployed(model, module, objective.whole_lm), head_on=head_on)
