"""The selection checks a result records as `warnings`, and how the leaderboard reads them back: one wording,
written by every trained regime, parsed in one place (torch-free)."""

from __future__ import annotations

from typing import Sequence

GRID_EDGE = "is on the edge of the grid"
LAST_STEP = "the best dev checkpoint is the last step"


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


def flags(warnings: Sequence[str] | None) -> tuple[bool, bool]:
    """(a grid's edge chosen, the best step the last) from a result's `warnings`."""
    warnings = warnings or []
    return any(GRID_EDGE in w for w in warnings), any(LAST_STEP in w for w in warnings)
