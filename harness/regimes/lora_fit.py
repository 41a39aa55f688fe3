"""LoRA adapters on a copied backbone, with peft."""

from __future__ import annotations

from typing import Any

from torch import nn

from harness.errors import HarnessError


def add_lora(backbone: nn.Module, settings: Any) -> nn.Module:
    """The backbone with LoRA adapters on `settings.targets`; only the adapters require gradients."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise HarnessError("the lora regime needs peft: pip install 'harness[lora]' (or peft>=0.21)") from None
    targets = list(settings.targets)
    if targets != ["all-linear"]:
        linear = linear_module_names(backbone)
        missing = [t for t in targets if t not in linear]
        if missing:
            raise HarnessError(f"--lora-targets {','.join(missing)}: the model has no such linear module "
                               f"(its linear modules: {', '.join(sorted(linear))})")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                        target_modules="all-linear" if targets == ["all-linear"] else targets)
    return get_peft_model(backbone, config)


def linear_module_names(model: nn.Module) -> set[str]:
    """The last name of every linear module (or GPT-2's Conv1D projection): what --lora-targets may name."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return names
