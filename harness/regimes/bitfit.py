"""`bitfit`: only the biases and normalisation weights of a copy of the backbone train (Ben Zaken et al. 2022),
plus a new head — the smallest change to the pretrained weights themselves. SmolLM2's projections have no biases,
so there the norms alone train."""

from __future__ import annotations

from dataclasses import dataclass

from harness.regimes.budget import CUDA_BUDGET, AdaptingBudget, Budget
from harness.regimes.objectives import NewHead, head_learning_rate_setting, pooling_setting
from harness.regimes.options import redefault
from harness.regimes.sources import Backbone
from harness.regimes.trained import TrainedRegime, always


@dataclass(frozen=True)
class BitfitSettings(AdaptingBudget):
    """How `bitfit` trains: the shared budget (a few scale and shift vectors take large steps), a new head."""

    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (1e-3,))
    head_learning_rate: float = head_learning_rate_setting()
    pooling: str = pooling_setting()


def biases_and_norms(name: str) -> bool:
    """Whether a parameter of the decoder is a bias or a normalisation weight."""
    modules = name.split(".")[:-1]
    return name.endswith(".bias") or any("norm" in part or part.startswith("ln") for part in modules)


BITFIT = TrainedRegime("bitfit", BitfitSettings, Backbone("pretrained", trains=biases_and_norms),
                       always(NewHead(zero_std=0.02)), cuda={**CUDA_BUDGET, "learning_rates": (1e-4, 3e-4, 1e-3, 3e-3)})
