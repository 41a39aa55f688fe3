"""`ia3`: (IA)³ adapters (Liu et al. 2022, peft): learned vectors that rescale the keys, values and feed-forward
activations of a frozen copy of the backbone, plus a new head (or, `--ia3-scoring prompt`, prompt-ft's answer
scores). The fewest trainable parameters of the adapter regimes; it stores the vectors and the head only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.regimes.budget import CUDA_BUDGET, AdaptingBudget, Budget
from harness.regimes.objectives import ANSWER_SCORES, NewHead, head_learning_rate_setting, pooling_setting
from harness.regimes.options import redefault, setting
from harness.regimes.sources import Backbone
from harness.regimes.trained import TrainedRegime


@dataclass(frozen=True)
class Ia3Settings(AdaptingBudget):
    """How `ia3` trains: the shared budget (rescaling vectors start at one and take large steps), the new head or
    the answer scores."""

    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (3e-3,))
    scoring: str = setting("head", "a new linear 'head', or the adapted LM's answer scores as prompt-ft ('prompt')",
                           scope="regime", choices=("head", "prompt"))
    head_learning_rate: float = head_learning_rate_setting()
    pooling: str = pooling_setting()


def ia3_config(settings: Ia3Settings, module: Any) -> Any:
    """peft's (IA)³ config with its own per-family targets (keys, values, the feed-forward output)."""
    from peft import IA3Config

    return IA3Config()


IA3 = TrainedRegime("ia3", Ia3Settings, Backbone("pretrained", adapters=ia3_config),
                    lambda settings: ANSWER_SCORES if settings.scoring == "prompt" else NewHead(zero_std=0.02),
                    lambda settings: "" if settings.scoring == "head" else settings.scoring,
                    cuda={**CUDA_BUDGET, "learning_rates": (1e-3, 3e-3, 1e-2)})
