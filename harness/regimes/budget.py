"""The training budget that `full`, `prompt-ft`, `lora` and `scratch` share: learning-rate grid, steps, batches, dev cadence and
early stopping, with a default per device kind (a CPU keeps to minutes; a GPU gets LM-BFF's budget)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, TypeVar

from harness.errors import HarnessError
from harness.regimes.options import NOT_HASHED, check_at_least, check_choice, overlay

DEVICE_KINDS = ("cpu", "cuda")
# LM-BFF trains 1000 steps and checks dev every 100; small models take larger rates, hence 1e-4 in the grid
CUDA_BUDGET = {"learning_rates": (1e-5, 2e-5, 5e-5, 1e-4), "max_steps": 1000, "batch_size": 8, "eval_every": 50,
               "patience": 5}


@dataclass(frozen=True)
class Budget:
    """How long and how a whole-model regime trains. The defaults are the CPU's; CUDA_BUDGET overrides them."""

    learning_rates: tuple[float, ...] = (4e-5,)  # --<regime>-learning-rates: selected on dev
    max_steps: int = 24  # --<regime>-max-steps: optimizer steps per learning rate (early stopping may end sooner)
    batch_size: int = 8  # --batch-size: examples per micro-batch
    grad_accum: int = 1  # --grad-accum: micro-batches per optimizer step
    eval_every: int = 8  # optimizer steps between dev checks
    patience: int = 2  # dev checks without improvement before stopping
    warmup_ratio: float = 0.1
    max_tokens: int = 256  # --max-tokens: inputs are cut to this many tokens, inside the input field
    gradient_checkpointing: bool = field(default=False, metadata=NOT_HASHED)  # --gradient-checkpointing
    defaults: str = field(default="cpu", metadata=NOT_HASHED)  # --full-defaults: the device kind whose defaults


B = TypeVar("B", bound=Budget)


def resolve_budget(defaults: B, options: Mapping[str, Any], device_kind: str, regime: str,
                   cuda: Mapping[str, Any] = CUDA_BUDGET) -> B:
    """`defaults` (a Budget subclass) for the device kind asked (--full-defaults) or in use (`cuda` overrides the
    CPU defaults on CUDA), then the options."""
    kind = options.get("full_defaults") or device_kind
    check_choice("--full-defaults", kind, DEVICE_KINDS)
    base = replace(defaults, defaults=kind, **(cuda if kind == "cuda" else {}))
    settings = overlay(base, options, regime)
    flag = regime.replace("_", "-")
    if not settings.learning_rates:
        raise HarnessError(f"--{flag}-learning-rates needs at least one learning rate")
    for name, value in ((f"--{flag}-max-steps", settings.max_steps), ("--batch-size", settings.batch_size),
                        ("--grad-accum", settings.grad_accum), ("--max-tokens", settings.max_tokens)):
        check_at_least(name, value, 8 if name == "--max-tokens" else 1)
    return settings
