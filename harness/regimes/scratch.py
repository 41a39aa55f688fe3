"""`scratch`: the base model's architecture and tokenizer, randomly initialised (the model class's own seeded
init), trained like `full` on the same k examples with its own learning rate. Pretrained minus scratch is the
transfer gain."""

from __future__ import annotations

from dataclasses import dataclass

from harness.regimes.budget import CUDA_BUDGET, Budget
from harness.regimes.objectives import NewHead, head_learning_rate_setting, pooling_setting
from harness.regimes.options import redefault
from harness.regimes.sources import FRESH
from harness.regimes.trained import TrainedRegime, always


@dataclass(frozen=True)
class ScratchSettings(Budget):
    """How `scratch` trains: the shared budget with a rate for random weights, and a new head (its start is
    random: the answer-token rows and the probe come from pretrained weights it does not have)."""

    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (3e-4,))
    head_learning_rate: float = head_learning_rate_setting()
    pooling: str = pooling_setting()


# random weights take larger steps than pretrained ones; and have nothing pretrained to forget
SCRATCH = TrainedRegime("scratch", ScratchSettings, FRESH, always(NewHead(zero_std=0.02)),
                        cuda={**CUDA_BUDGET, "learning_rates": (1e-4, 3e-4, 1e-3)}, adapts_backbone=False)
