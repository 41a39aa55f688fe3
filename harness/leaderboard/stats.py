"""Calibration and paired significance, from per-example probabilities (numpy and scipy.stats)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

ECE_BINS = 10  # equal-width bins over the top-class probability, (0, 0.1], ..., (0.9, 1]
PERMUTATIONS = 9999
SIGNIFICANCE = 0.05


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_bins (|bin| / n) · |accuracy(bin) − mean confidence(bin)|, confidence = top-class probability."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == gold
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def brier_score(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean over examples of Σ_classes (p − onehot)²."""
    onehot = np.eye(probs.shape[1])[gold]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def paired_p_value(a_correct: Sequence[float], b_correct: Sequence[float], seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(a − b) over matched examples."""
    diff = np.asarray(a_correct, dtype=float) - np.asarray(b_correct, dtype=float)
    if not diff.any():
        return 1.0
    result = stats.permutation_test(
        (diff,), np.mean, permutation_type="samples", alternative="two-sided",
        n_resamples=PERMUTATIONS, random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)
