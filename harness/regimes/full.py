"""`full`: every weight of a copy of the base model trained, with a new linear head (the base is never touched)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.regimes.budget import AdaptingBudget
from harness.regimes.objectives import (NewHead, c_grid_setting, head_init_setting, head_learning_rate_setting,
                                        pooling_setting)
from harness.regimes.sources import PRETRAINED
from harness.regimes.trained import TrainedRegime, always


@dataclass(frozen=True)
class FullSettings(AdaptingBudget):
    """How `full` trains: the shared budget, and its new head."""

    head_learning_rate: float = head_learning_rate_setting()
    pooling: str = pooling_setting()
    head_init: str = head_init_setting()
    c_grid: tuple[float, ...] = c_grid_setting()  # --head-init probe


def variant(settings: FullSettings) -> str:
    return f"{settings.head_init}-init" if settings.head_init != "zero" else ""


FULL = TrainedRegime("full", FullSettings, PRETRAINED, always(NewHead(zero_std=0.02)), variant)
