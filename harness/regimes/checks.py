"""The selection checks a result records as `warnings`, and how the leaderboard reads them back: one wording,
written by every trained regime, parsed in one place (torch-free)."""

from __future__ import annotations

from typing import Sequence

GRID_EDGE = "is on the edge of the grid"
LAST_STEP = "the best dev checkpoint is the last step"
FIRST_EVALUATION = "the best dev checkpoint is the first evaluation"
CANNOT_STOP = "early stopping could not stop"


def grid_edge(name: str, grid: Sequence[float], chosen: float) -> list[str]:
    """A choice on either end of a grid of several values (the grid may have been too narrow)."""
    if len(grid) > 1 and chosen in (min(grid), max(grid)):
        return [f"{name} = {chosen:g} {GRID_EDGE} ({min(grid):g} .. {max(grid):g})"]
    return []


def last_step(best_step: int, steps: int, max_steps: int) -> list[str]:
    """The best checkpoint at the last step of a run early stopping did not end (the budget may not converge)."""
    if best_step == steps == max_steps:
        return [f"{LAST_STEP} ({best_step} of {max_steps}): dev was still improving"]
    return []


def first_evaluation(best_step: int, first_step: int, steps: int) -> list[str]:
    """The best checkpoint at the first dev check of a run that went on past it: later training only made dev worse
    (the learning rate may be too high, or the model overfits at once)."""
    if best_step == first_step < steps:
        return [f"{FIRST_EVALUATION} (step {best_step} of {steps}): dev only got worse after it"]
    return []


def cannot_stop(eval_every: int, patience: int, min_steps: int, max_steps: int) -> list[str]:
    """A budget whose dev cadence and patience leave early stopping no room: the earliest stop is the last step."""
    earliest = max(min_steps, eval_every * (patience + 1))
    if earliest >= max_steps:
        return [f"{CANNOT_STOP} (earliest stop at step {earliest}, budget {max_steps} steps): every run trains to the end"]
    return []


def flags(warnings: Sequence[str] | None) -> tuple[bool, bool]:
    """(a grid's edge chosen, the best step the last) from a result's `warnings`."""
    warnings = warnings or []
    return any(GRID_EDGE in w for w in warnings), any(LAST_STEP in w for w in warnings)
