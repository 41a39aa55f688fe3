"""Metric names -> functions over Predictions, built on scikit-learn."""

from __future__ import annotations

from typing import Callable, Sequence

from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from harness.types import Prediction


def accuracy(preds: Sequence[Prediction]) -> float:
    """Share of examples whose most probable class is the gold one."""
    return float(accuracy_score([p.gold for p in preds], [p.pred for p in preds]))


def accuracy_norm(preds: Sequence[Prediction]) -> float | None:
    """Accuracy when each answer's log-likelihood is divided by its length in characters (prompting only)."""
    if any(p.pred_norm is None for p in preds):
        return None
    return float(accuracy_score([p.gold for p in preds], [p.pred_norm for p in preds]))


def macro_f1(preds: Sequence[Prediction]) -> float:
    """F1 averaged over classes with equal weight; classes absent from gold and prediction are ignored."""
    return float(f1_score([p.gold for p in preds], [p.pred for p in preds], average="macro", zero_division=0))


def mcc(preds: Sequence[Prediction]) -> float:
    """Matthews correlation coefficient."""
    return float(matthews_corrcoef([p.gold for p in preds], [p.pred for p in preds]))


# The table of metrics a task file may name. accuracy_norm is added for prompting regimes on its own.
METRICS: dict[str, Callable[[Sequence[Prediction]], float | None]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "mcc": mcc,
    "accuracy_norm": accuracy_norm,
}


def compute_metrics(names: Sequence[str], preds: Sequence[Prediction]) -> dict[str, float]:
    """The task's metrics, plus accuracy_norm wherever the regime produced per-character scores."""
    wanted = list(dict.fromkeys([*names, "accuracy_norm"]))
    values = {name: METRICS[name](preds) for name in wanted}
    return {k: v for k, v in values.items() if v is not None}
