"""Calibration and paired significance, from per-example probabilities (numpy and scipy.stats)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ECE_BINS = 10  # equal-width bins over the top-class probability, (0, 0.1], ..., (0.9, 1]
PERMUTATIONS = 9999


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
    """Two-sided paired permutation (sign-flip) test of mean(a − b) over matched examples.

    Exact over all 2^n sign patterns when there are at most PERMUTATIONS of them, else PERMUTATIONS random
    ones with p = (hits + 1) / (PERMUTATIONS + 1). Written with numpy: scipy.stats.permutation_test gives the
    same p-values (tested) but takes seconds per pair at n = 5000.
    """
    diff = np.asarray(a_correct, dtype=float) - np.asarray(b_correct, dtype=float)
    diff = diff[diff != 0]  # a zero difference has the same value under either sign
    if diff.size == 0:
        return 1.0
    total = diff.size
    if 2 ** total <= PERMUTATIONS:
        signs = 1 - 2 * ((np.arange(2 ** total)[:, None] >> np.arange(total)) & 1)
        return float(np.mean(np.abs((signs * diff).sum(axis=1)) >= abs(diff.sum()) - 1e-9))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, PERMUTATIONS, 500):
        signs = rng.choice((-1.0, 1.0), size=(min(500, PERMUTATIONS - start), total))
        hits += int(np.sum(np.abs(signs @ diff) >= abs(diff.sum()) - 1e-9))
    return (hits + 1) / (PERMUTATIONS + 1)


def mean_with_ci(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a percentile bootstrap CI (scipy.stats.bootstrap, 9,999 resamples); NaN bounds below two values."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return mean, math.nan, math.nan
    if np.ptp(data) == 0:  # every resample has the same mean
        return mean, mean, mean
    ci = bootstrap((data,), np.mean, confidence_level=level, n_resamples=PERMUTATIONS, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return mean, float(ci.low), float(ci.high)


BOOTSTRAP_RESAMPLES = 4000


def hierarchical_bootstrap(correct: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Resampled means of a (regimes, seeds, examples) array of per-example scores (correctness, or a paired
    difference): seeds drawn with replacement, then test examples with replacement within each drawn seed; the
    same draws for every regime, so that differences and "which is best" stay paired. Returns (resamples,
    regimes). The variance it carries is that of a new draw of k training examples *and* of a new test set —
    for a nested design; where every seed scores the same items, use crossed_bootstrap."""
    return _resampled_means(correct, resamples, seed, shared_items=False)


def _resampled_means(correct: np.ndarray, resamples: int, seed: int, shared_items: bool) -> np.ndarray:
    """Seeds drawn with replacement, and items with replacement: within each drawn seed (nested), or once per
    resample for every seed (crossed). (resamples, regimes) means."""
    scores = np.asarray(correct, dtype=float)
    if scores.ndim == 2:
        scores = scores[None]
    _, seeds, examples = scores.shape
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, scores.shape[0]))
    for start in range(0, resamples, 250):
        b = min(250, resamples - start)
        drawn_seeds = rng.integers(0, seeds, size=(b, seeds))
        if shared_items:
            drawn = rng.integers(0, examples, size=(b, examples))[:, None, :]
        else:
            drawn = rng.integers(0, examples, size=(b, seeds, examples))
        picked = scores[:, drawn_seeds[:, :, None], drawn]  # (regimes, b, seeds, examples)
        out[start : start + b] = picked.mean(axis=(2, 3)).T
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    low, high = np.percentile(samples, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def seed_level_p_value(a_by_seed: Sequence[float], b_by_seed: Sequence[float]) -> float:
    """Two-sided exact sign-flip test of the per-seed accuracy differences: the unit of replication is the draw
    of k training examples (with 5 seeds the smallest possible p is 2/32 = 0.0625)."""
    return paired_p_value(a_by_seed, b_by_seed)


def crossed_bootstrap(correct: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Resampled means of a (regimes, seeds, examples) array, for a *crossed* design (every seed scores the same
    test items): seeds and items drawn with replacement independently, the drawn items shared by every drawn seed
    (and every regime) of a resample, so the item effect all seeds share is kept. Returns (resamples, regimes)."""
    return _resampled_means(correct, resamples, seed, shared_items=True)


def crossed_interval(scores: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, two-sided p of mean = 0) of a (seeds, items) array from a crossed design, by the two-way
    random-effects ANOVA: Var(mean) = (MS_seed + MS_item - MS_residual) / (seeds x items), with Satterthwaite's
    degrees of freedom and a t interval (with 5 seeds the seed term has 4 degrees of freedom, and the interval is
    as wide as that warrants: percentile bootstraps over 5 seeds cover about 84 % at nominal 95 %). One seed: the
    items alone (a one-sample t interval over items)."""
    from scipy import stats

    d = np.asarray(scores, dtype=float)
    if d.ndim == 1:
        d = d[None]
    s, i = d.shape
    mean = float(d.mean())
    if s == 1 or i == 1:
        flat = d.ravel()
        if flat.size < 2 or np.ptp(flat) == 0:
            return mean, mean, mean, 1.0 if mean == 0 else 0.0
        se, df = flat.std(ddof=1) / math.sqrt(flat.size), flat.size - 1
    else:
        seed_means, item_means = d.mean(axis=1), d.mean(axis=0)
        ms_seed = i * ((seed_means - mean) ** 2).sum() / (s - 1)
        ms_item = s * ((item_means - mean) ** 2).sum() / (i - 1)
        residual = d - seed_means[:, None] - item_means[None, :] + mean
        ms_res = (residual ** 2).sum() / ((s - 1) * (i - 1))
        numerator = ms_seed + ms_item - ms_res
        if numerator <= 0:  # sampling noise made the combination negative: the larger single term bounds it
            numerator = max(ms_seed, ms_item)
        if numerator == 0:
            return mean, mean, mean, 1.0 if mean == 0 else 0.0
        se = math.sqrt(numerator / (s * i))
        denominator = ms_seed ** 2 / (s - 1) + ms_item ** 2 / (i - 1) + ms_res ** 2 / ((s - 1) * (i - 1))
        df = max(1.0, numerator ** 2 / denominator) if denominator > 0 else float(s - 1)
    half = stats.t.ppf((1 + level) / 2, df) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return mean, mean - half, mean + half, p


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the comparisons given)."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[name]))
        adjusted[name] = running
    return adjusted


def expected_max(values: list[float], n: int) -> float:
    """E[max of n draws with replacement] from the values: sum over the sorted values v_(i) of
    P(max = v_(i)) = (i/N)^n - ((i-1)/N)^n."""
    ordered, size = sorted(values), len(values)
    return sum(v * (((i + 1) / size) ** n - (i / size) ** n) for i, v in enumerate(ordered))
