"""`prompt-ft`: prompt-based fine-tuning (LM-BFF). Every weight of a copy of the LM is trained so that, after the
template, the class's answer gets the mass: cross-entropy over the answers' summed log-likelihoods, the very
scores zero-shot compares; the trained copy then scores the test set exactly as zero-shot does. No new parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.regimes.budget import AdaptingBudget
from harness.regimes.objectives import ANSWER_SCORES
from harness.regimes.sources import PRETRAINED
from harness.regimes.trained import TrainedRegime, always


@dataclass(frozen=True)
class PromptFtSettings(AdaptingBudget):
    """How `prompt-ft` trains: the shared budget, no new head."""


PROMPT_FT = TrainedRegime("prompt-ft", PromptFtSettings, PRETRAINED, always(ANSWER_SCORES))
