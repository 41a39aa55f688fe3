"""The standard linear probe: standardised features, multinomial logistic regression by L-BFGS (scikit-learn),
its inverse regularisation C chosen on dev. `head` predicts with it; `full --head-init probe` starts from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.metrics import dev_scores
from harness.regimes.checks import grid_edge

if TYPE_CHECKING:  # scikit-learn is imported when a probe is fitted: the registry (and the leaderboard) stay light
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

# 10^-4 .. 10^4 in half-decades: wide enough that the edge is rarely the choice (each edge is a warning)
C_GRID = tuple(float(10 ** (e / 2)) for e in range(-8, 9))
MAX_ITER = 2000


@dataclass
class Probe:
    """The chosen probe, and every C's dev scores."""

    scaler: StandardScaler | None  # None: the features are used as they are (tf-idf)
    model: LogisticRegression
    classes: int
    c: float
    dev_accuracy: float
    dev_loss: float
    tried: list[dict[str, float]]  # per C in grid order: dev accuracy and loss

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if self.scaler is not None:
            features = self.scaler.transform(np.asarray(features, dtype=np.float64))
        probs = self.model.predict_proba(features)
        return _all_classes(self.model, probs, self.classes)

    @property
    def warnings(self) -> list[str]:
        """A choice on the grid's edge, as every regime's result records it."""
        return grid_edge("C", [t["C"] for t in self.tried], self.c)

    def selection(self, rule: str) -> dict[str, Any]:
        """What a result records of the search: the rule, the choice, its dev scores, every C's."""
        chosen = next(t for t in self.tried if t["C"] == self.c)
        return {"rule": rule, "chosen": {"C": self.c}, "dev_accuracy": self.dev_accuracy, "dev_loss": self.dev_loss,
                **({"dev_score": chosen["dev_score"]} if "dev_score" in chosen else {}),
                "configurations": len(self.tried), "grid": self.tried}

    def raw_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(classes, dim) weights and bias acting on the unstandardised features: the same logits."""
        if len(self.model.classes_) != self.classes:
            raise ValueError("a probe trained on fewer classes than the task has gives no weights for the rest")
        coef, bias = self.model.coef_, self.model.intercept_
        if self.scaler is not None:
            coef = coef / self.scaler.scale_
            bias = bias - coef @ self.scaler.mean_
        if coef.shape[0] == 1:  # scikit-learn keeps one row for two classes: logits (0, z) -> (-z/2, z/2)
            coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        return coef, bias


def fit_probe(train: Any, train_labels: Sequence[int], dev: Any, dev_labels: Sequence[int], classes: int,
              grid: Sequence[float] = C_GRID, standardize: bool = True, metric: str = "accuracy") -> Probe:
    """Standardise with the training features' mean and std (unless told not to: sparse tf-idf), fit one probe
    per C, keep the best on dev: the metric (accuracy), then log-loss, then the smaller C (the grid's order)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    scaler = None
    x_train, x_dev = train, dev
    if standardize:
        train, dev = np.asarray(train, dtype=np.float64), np.asarray(dev, dtype=np.float64)
        scaler = StandardScaler().fit(train)
        x_train, x_dev = scaler.transform(train), scaler.transform(dev)
    labels = list(range(classes))
    best, tried = None, []
    for position, c in enumerate(grid):
        model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(x_train, train_labels)
        probs = _all_classes(model, model.predict_proba(x_dev), classes)
        accuracy = float(np.mean(probs.argmax(1) == np.asarray(dev_labels)))
        loss = float(log_loss(dev_labels, probs, labels=labels))
        score = accuracy if metric == "accuracy" else dev_scores(metric, dev_labels, probs)["dev_score"]
        tried.append({"C": c, "dev_accuracy": accuracy, "dev_loss": loss,
                      **({"dev_score": score} if metric != "accuracy" else {})})
        key = (-score, loss if math.isfinite(loss) else math.inf, position)
        if best is None or key < best[0]:
            best = (key, c, model, accuracy, loss)
    _, c, model, accuracy, loss = best
    return Probe(scaler, model, classes, c, accuracy, loss, tried)


def train_probe(store: Any, texts: dict[str, list[str]], labels: dict[str, list[int]], classes: int, settings: Any,
                progress: bool = False) -> Probe:
    """The probe on the cached pooled features (a FeatureStore) of the train texts, C chosen on the dev texts by
    the settings' select_metric (settings: pooling, max_tokens, batch_size, c_grid)."""
    feats = {split: store.pooled(texts[split], settings.pooling, settings.max_tokens, settings.batch_size,
                                 progress).numpy() for split in ("train", "dev")}
    return fit_probe(feats["train"], labels["train"], feats["dev"], labels["dev"], classes, settings.c_grid,
                     metric=settings.select_metric)


def _all_classes(model: LogisticRegression, probs: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities over every class, in label order (columns follow model.classes_)."""
    full = np.zeros((len(probs), classes))
    full[:, model.classes_] = probs
    return full
