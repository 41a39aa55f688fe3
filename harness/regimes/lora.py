"""`lora`: low-rank adapters (peft) on the linear projections of a frozen copy of the backbone, plus a new head
(or, `--lora-scoring prompt`, no head: prompt-ft's answer scores). It stores only the adapter and the head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.regimes.budget import CUDA_BUDGET, AdaptingBudget, Budget
from harness.regimes.objectives import (ANSWER_SCORES, NewHead, c_grid_setting, head_init_setting,
                                        head_learning_rate_setting, pooling_setting)
from harness.regimes.options import redefault, setting
from harness.regimes.sources import Backbone
from harness.regimes.trained import TrainedRegime


@dataclass(frozen=True)
class LoraSettings(AdaptingBudget):
    """How `lora` trains: the shared budget (adapters start at zero and take larger steps), the adapters, and the
    new head or the answer scores."""

    learning_rates: tuple[float, ...] = redefault(Budget, "learning_rates", (1e-3,))
    rank: int = setting(8, "adapter rank; several (1,2,4,...,64) give one variant each: the trainable-parameter "
                           "sweep", scope="regime", minimum=1, axis=True)
    alpha: int = setting(16, "adapter scale: the update is multiplied by alpha / rank", scope="regime", minimum=1)
    targets: tuple[str, ...] = setting(("all-linear",), "linear module names in the blocks, or 'all-linear'",
                                       scope="regime")
    scoring: str = setting("head", "a new linear 'head', or the adapted LM's answer scores as prompt-ft ('prompt')",
                           scope="regime", choices=("head", "prompt"))
    head_learning_rate: float = head_learning_rate_setting()
    pooling: str = pooling_setting()
    head_init: str = head_init_setting()
    c_grid: tuple[float, ...] = c_grid_setting()  # --head-init probe


def lora_config(settings: LoraSettings, module: Any) -> Any:
    """peft's LoRA config on the targets; a target the module lacks is one line listing its linear modules."""
    from peft import LoraConfig

    targets = list(settings.targets)
    if targets != ["all-linear"]:
        linear = linear_module_names(module)
        missing = [t for t in targets if t not in linear]
        if missing:
            raise HarnessError(f"--lora-targets {','.join(missing)}: the model has no such linear module "
                               f"(its linear modules: {', '.join(sorted(linear))})")
    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                      target_modules="all-linear" if targets == ["all-linear"] else targets)


def linear_module_names(model: Any) -> set[str]:
    """The last name of every linear module (or GPT-2's Conv1D projection): what --lora-targets may name."""
    from torch import nn

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"}


def variant(settings: LoraSettings) -> str:
    parts = [] if settings.scoring == "head" else [settings.scoring]
    parts += [] if settings.rank == LoraSettings.rank else [f"r{settings.rank}"]
    if settings.targets != LoraSettings.targets:
        parts.append("-".join(settings.targets))
    if settings.head_init != "zero":
        parts.append(f"{settings.head_init}-init")
    return "-".join(parts)


LORA = TrainedRegime("lora", LoraSettings, Backbone("pretrained", adapters=lora_config),
                     lambda settings: ANSWER_SCORES if settings.scoring == "prompt" else NewHead(zero_std=0.02),
                     variant, cuda={**CUDA_BUDGET, "learning_rates": (1e-4, 3e-4, 1e-3, 3e-3)})
