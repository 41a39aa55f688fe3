"""What every regime is to the runner: a small Protocol (no base class), the device, and a regime's output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping, Protocol

from harness.types import Cost, FitData, Prediction, Template


@dataclass(frozen=True)
class Device:
    """Where cells run: part of every cell's config hash, and what `by device` defaults depend on."""

    kind: str  # "cpu" or "cuda"
    dtype: str  # "float32", "bfloat16", ...


@dataclass
class Shared:
    """Work the cells of one run share, so that no cell recomputes what another already did."""

    features: Any  # FeatureStore: backbone features per distinct input (head), token counts (head, full)
    scores: dict[Any, Any] = field(default_factory=dict)  # prompting: scored inputs per (template, demos, inputs)


@dataclass
class RegimeRun:
    """What a regime returns for one cell: predictions without gold labels, its cost, and what it recorded."""

    predictions: list[Prediction]
    cost: Cost
    details: dict[str, Any] = field(default_factory=dict)  # settings, selection, train/demo/dev ids, ...
    # the causal LM as a user would deploy it after this cell's training: base model -> a context that applies
    # what was trained (and undoes it on exit); None: the base model unchanged. The runner measures forgetting
    # (--forgetting) through it when the regime adapts the backbone.
    deployed: Callable[[Any], ContextManager[Any]] | None = None
    # this cell's trained head read on another causal LM (examples -> predictions without gold), for a regime with a
    # new head on a whole backbone; what --sequence scores an earlier task with after later tasks changed the weights
    head_on: Callable[[Any, Any], list[Prediction]] | None = None


class Regime(Protocol):
    """One way of scoring the base model on a task."""

    name: str  # the word in flags, file names, JSON and tables
    settings: type  # its frozen settings dataclass: the one schema of its flags, run-file keys, JSON and hash
    prompting: bool  # scores the LM's own answers without training (few-shot is the learning curves' reference)
    draws_examples: bool  # learns from the k-shot training set (False: zero-shot, whose cells take a k and a
    #                       seed only to select on that draw's dev set, else one cell per template)
    takes_all_k: bool  # whether --k all (the whole train split, validation as dev) makes sense
    adapts_backbone: bool  # trains on top of the pretrained weights (forgetting is measured: --forgetting)

    def needs_dev(self, settings: Any, templates: int) -> bool:
        """Whether a cell draws a dev set, given its settings and how many templates the run compares."""

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[Any, ...]:
        """Frozen settings, one per variant the options ask for (an axis field given several values gives several):
        options over the device's defaults (`options.resolve_settings`); bad values are HarnessError."""

    def variant(self, settings: Any) -> str:
        """A name for settings that change results ('' for the defaults): head's 'top2', 'mean-pool', ..."""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: Any,
            progress: bool) -> RegimeRun:
        """Predict data.test (its labels are not there) after learning from data.train (drawn with data.seed,
        data.k per class), selecting on data.dev."""
