"""`prompt-tuning` and `prefix`: a frozen copy of the causal LM with n trained virtual tokens before every input
(peft's prompt learning), trained on prompt-ft's answer-score loss and predicted by the same answer scores.

- `prompt-tuning` (Lester et al. 2021): n input embeddings, initialised from the embeddings of the template's own
  words (its text without the Jinja fields, repeated to n tokens);
- `prefix` (Li & Liang 2021): n keys and values in every attention layer (peft's random start).

Nothing of the base changes: the deployed model is the base with a prompt no other task sees (forgetting is 0 by
construction and not measured). Rows are padded (a packed row would need the virtual tokens inside it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.regimes.budget import CUDA_BUDGET, Budget
from harness.regimes.objectives import ANSWER_SCORES
from harness.regimes.options import redefault, setting
from harness.regimes.sources import Backbone
from harness.regimes.trained import TrainedRegime, always


@dataclass(frozen=True)
class SoftPromptSettings(Budget):
    """How a soft prompt trains: the shared budget (virtual tokens take large steps), its length."""

    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (3e-2,))
    virtual_tokens: int = setting(20, "virtual tokens before every input (the soft prompt's length)",
                                  scope="regime", minimum=1)


def prompt_tuning_config(settings: SoftPromptSettings, module: Any) -> Any:
    from peft import PromptTuningConfig, TaskType

    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings.virtual_tokens)


def prefix_config(settings: SoftPromptSettings, module: Any) -> Any:
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings.virtual_tokens)


PROMPT_TUNING = TrainedRegime("prompt-tuning", SoftPromptSettings, Backbone("pretrained", adapters=prompt_tuning_config),
                              always(ANSWER_SCORES), cuda={**CUDA_BUDGET, "learning_rates": (1e-2, 3e-2, 1e-1)},
                              adapts_backbone=False)
PREFIX = TrainedRegime("prefix", SoftPromptSettings, Backbone("pretrained", adapters=prefix_config),
                       always(ANSWER_SCORES), cuda={**CUDA_BUDGET, "learning_rates": (1e-3, 3e-3, 1e-2)},
                       adapts_backbone=False)
