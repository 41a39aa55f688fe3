"""What a cell cost, in one place: every regime that trains fills its Cost through `training_cost`, with its
FLOPs from `transformer_flops` (the runner adds memory and percentages)."""

from __future__ import annotations

from harness.types import Cost, FitData


def transformer_flops(blocks: int, trained: int, train_tokens: int, frozen_tokens: int) -> float:
    """6·N·tokens through the trained parameters (forward and backward), 2·N·tokens through the frozen blocks of
    a forward whose features are read (N: parameters in the blocks and final norm)."""
    return 2 * (blocks - trained) * frozen_tokens + 6 * trained * train_tokens


def training_cost(data: FitData, *, trainable: int, total: int, stored_bytes: int, steps: int, seconds: float,
                  train_tokens: int = 0, train_flops: float = 0.0, inference_flops_per_example: float = 0.0,
                  feature_tokens_run: int = 0) -> Cost:
    """A trained cell's cost: what it trained and kept, on how many labelled examples, in how long."""
    return Cost(trainable_parameters=trainable, total_parameters=total, stored_bytes_per_task=stored_bytes,
                train_examples=len(data.train), dev_examples=len(data.dev), train_steps=steps,
                train_tokens=train_tokens, train_wall_time_s=round(seconds, 3), train_flops=train_flops,
                inference_flops_per_example=inference_flops_per_example, feature_tokens_run=feature_tokens_run)
