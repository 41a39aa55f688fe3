"""Label-free calibration of prompting's class probabilities.

An LM prompted for a label has a prior over the label words that has nothing to do with the input: one class
can take nearly every prediction. Calibrate Before Use (Zhao et al. 2021) estimates that prior and divides it
out: p'(y | x) ∝ p(y | x) / q(y). Two estimates of q, neither reading a label:
- `content-free`: the mean prediction for content-free inputs ("N/A", "", "[MASK]") put into every input field
  and rendered through the same template after the same demos;
- `dev-prior`: the mean prediction over the cell's dev inputs (their labels unread).
"""

from __future__ import annotations

from typing import Sequence

from harness.types import TestInput

CALIBRATIONS = ("none", "content-free", "dev-prior")
CONTENT_FREE = ("N/A", "", "[MASK]")


def content_free_inputs(fields: Sequence[str]) -> list[TestInput]:
    """One input per content-free string, with that string in every input field."""
    return [TestInput(id=f"content-free-{i}", fields={f: text for f in fields}) for i, text in enumerate(CONTENT_FREE)]


def mean_probabilities(rows: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """The per-class mean of several probability vectors: the estimated prior q."""
    return tuple(sum(column) / len(rows) for column in zip(*rows))


def calibrate(probs: Sequence[float], prior: Sequence[float]) -> tuple[float, ...]:
    """p / q, renormalised; a class the prior gives no mass keeps its uncalibrated share."""
    scaled = [p / q if q > 0 else p for p, q in zip(probs, prior)]
    total = sum(scaled)
    return tuple(s / total for s in scaled) if total > 0 else tuple(probs)
