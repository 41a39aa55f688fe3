"""The training budget every trained regime shares: the one training loop's every knob (training.py), declared
once. A regime's settings list these fields with its own defaults; a regime may give CUDA its own defaults
(`device_defaults`): a CPU keeps to minutes, a GPU gets LM-BFF's budget."""

from __future__ import annotations

from dataclasses import dataclass

from harness.regimes.options import select_metric_setting, setting

# LM-BFF trains up to 1000 steps; small models take larger rates, hence 1e-4 in the grid. Dev is checked every 10
# steps, not LM-BFF's 100: at k = 16 (32-96 training examples) 50 steps are 4-12 epochs, the CPU pilot's best steps
# were 8-104 (median 24; leaderboard/studies/convergence), and the first GPU cell, checked every 50, peaked at its
# first check at all four rates (leaderboard/studies/convergence/runs-gpu). Patience 10: 100 steps without a gain.
CUDA_BUDGET = {"learning_rates": (1e-5, 2e-5, 5e-5, 1e-4), "max_steps": 1000, "batch_size": 8, "eval_every": 10,
               "patience": 10}


@dataclass(frozen=True)
class Budget:
    """How a trained regime trains: AdamW, warmup then linear decay, clipping, dev checks, early stopping.
    The defaults are `full`'s on a CPU; each regime redeclares the ones it changes."""

    learning_rates: tuple[float, ...] = setting((4e-5,), "learning-rate grid, selected on dev", scope="regime",
                                                above=0)
    max_steps: int = setting(24, "optimizer steps per learning rate (early stopping may end sooner)",
                             scope="regime", minimum=1)
    batch_size: int = setting(8, "examples per micro-batch", minimum=1)
    grad_accum: int = setting(1, "micro-batches per optimizer step", minimum=1)
    eval_every: int = setting(8, "optimizer steps between dev checks", scope="regime", minimum=1)
    patience: int = setting(2, "dev checks without improvement before stopping", scope="regime", minimum=1)
    min_steps: int = setting(0, "optimizer steps before early stopping may stop", scope="regime", minimum=0)
    warmup_ratio: float = setting(0.1, "share of the steps with a rising learning rate", scope="regime", minimum=0)
    weight_decay: float = setting(0.01, "AdamW's weight decay", scope="regime", minimum=0)
    max_grad_norm: float = setting(1.0, "gradients clipped to this norm", scope="regime", above=0)
    pack: bool = setting(False, "train on packed rows: a batch's inputs in one row without padding, each attending "
                                "to itself alone (a block-diagonal mask); the same loss up to float rounding (head's top blocks, "
                                "trained on cached hidden states, keep padded rows)")
    max_tokens: int = setting(256, "inputs are cut to this many tokens, inside their longest field", minimum=8)
    select_metric: str = select_metric_setting()
    gradient_checkpointing: bool = setting(False, "trade compute for memory", hashed=False)
    device_defaults: str = setting("cpu", "take this device kind's default budget (cpu, cuda) instead of the "
                                          "one in use's, e.g. to match cells computed on a GPU", hashed=False)


@dataclass(frozen=True)
class AdaptingBudget(Budget):
    """The budget of a regime that changes the backbone's weights, with the forgetting mitigation it may train
    under (mitigation.py); its strength is chosen on dev with the learning rate."""

    mitigation: str = setting("none", "forgetting mitigation: none; l2sp (strength/2 x ||w - w0||^2 toward the "
                                      "weights training started from); ewc (the same, each weight scaled by its "
                                      "diagonal Fisher on general text); replay (strength x the LM loss on general "
                                      "text, a quarter of each batch); a comma list gives one variant each",
                              choices=("none", "l2sp", "ewc", "replay"), axis=True)
    mitigation_strengths: tuple[float, ...] = setting((0.01, 0.1, 1.0), "the mitigation's strength grid, selected "
                                                                       "on dev with the learning rate", above=0)
