"""Metrics with what the tables and dev selection need to know of them: name -> function over Predictions,
whether higher is better, how cells aggregate, whether it is a rate in [0, 1]. scikit-learn computes them.

Adding a metric is one entry in METRICS; a task file may then list it under `metrics:`, `--select-metric` may
choose on it, and every table and `summary.md` shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.types import Prediction


@dataclass(frozen=True)
class Metric:
    """A metric and how to read it."""

    name: str
    compute: Callable[[Sequence[Prediction]], float | None]  # None: not defined for these predictions
    higher_is_better: bool = True
    aggregation: str = "mean"  # how cells combine over seeds and templates (mean ± sample std)
    rate: bool = True  # a share in [0, 1], shown in percent
    description: str = ""


def accuracy(preds: Sequence[Prediction]) -> float:
    """Share of examples whose most probable class is the gold one."""
    return sum(p.pred == p.gold for p in preds) / len(preds)


def accuracy_norm(preds: Sequence[Prediction]) -> float | None:
    """Accuracy when each answer's log-likelihood is divided by its length in characters (prompting only)."""
    if any(p.pred_norm is None for p in preds):
        return None
    return sum(p.pred_norm == p.gold for p in preds) / len(preds)


def macro_f1(preds: Sequence[Prediction]) -> float:
    """F1 averaged over classes with equal weight; classes absent from gold and prediction are ignored."""
    from sklearn.metrics import f1_score

    return float(f1_score([p.gold for p in preds], [p.pred for p in preds], average="macro", zero_division=0))


def mcc(preds: Sequence[Prediction]) -> float:
    """Matthews correlation coefficient."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef([p.gold for p in preds], [p.pred for p in preds]))


# The table of metrics a task file may name. accuracy_norm is added for prompting regimes on its own.
METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, description="share of examples answered right"),
    "macro_f1": Metric("macro_f1", macro_f1, description="F1 averaged over classes"),
    "mcc": Metric("mcc", mcc, rate=False, description="Matthews correlation, -1 .. 1"),
    "accuracy_norm": Metric("accuracy_norm", accuracy_norm, description="accuracy on per-character answer scores"),
}


def compute_metrics(names: Sequence[str], preds: Sequence[Prediction]) -> dict[str, float]:
    """The task's metrics, plus accuracy_norm wherever the regime produced per-character scores."""
    wanted = list(dict.fromkeys([*names, "accuracy_norm"]))
    values = {name: METRICS[name].compute(preds) for name in wanted}
    return {k: float(v) for k, v in values.items() if v is not None}


def shown_metrics(names: Sequence[str]) -> list[str]:
    """The metrics a table shows for tasks listing `names`: accuracy first, then the others in METRICS order."""
    listed = set(names) | {"accuracy"}
    return [name for name in METRICS if name in listed and name != "accuracy_norm"]


def dev_scores(metric: str, golds: Sequence[int], probs: Sequence[Sequence[float]]) -> dict[str, Any]:
    """What a dev choice reads: accuracy, log-loss, and the selection metric's value (`dev_score`, signed so that
    higher is better)."""
    preds = [Prediction(id=str(i), gold=g, probs=tuple(float(x) for x in p)) for i, (g, p) in enumerate(zip(golds, probs))]
    loss = -sum(math.log(max(p[g], 1e-12)) for p, g in zip(probs, golds)) / len(golds)
    chosen = METRICS[metric]
    value = chosen.compute(preds)
    value = -math.inf if value is None or not math.isfinite(value) else value if chosen.higher_is_better else -value
    return {"dev_accuracy": accuracy(preds), "dev_loss": loss, "dev_score": value}


def selection_key(scores: dict[str, Any]) -> tuple[float, float]:
    """Higher is better: the selection metric, then the lower loss (a non-finite loss ranks last)."""
    loss = scores["dev_loss"]
    return scores["dev_score"], -loss if math.isfinite(loss) else -math.inf
