"""Which regime for this task and budget: seed-aware comparisons, and the verdict as sentences from the numbers.

For one task at one k, every regime's per-example correctness is laid out as (seeds × test examples), each seed's
dev-selected template, the same seeds and examples for every regime (a regime that draws nothing, as a zero-shot
without a dev set, repeats its one run for every seed). A hierarchical bootstrap (seeds, then examples within
each) resamples all regimes with the same draws: 95 % intervals for each accuracy and for each difference to the
best, and how often each regime comes out best. Beside it the seed-level paired test, whose unit is the draw of
k training examples. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.leaderboard.stats import hierarchical_bootstrap, percentile_interval, seed_level_p_value
from harness.leaderboard.seeds import correctness, per_seed, regime_order

WITHIN = 0.01  # "as good": within one accuracy point of the best


@dataclass
class Comparison:
    """One task at one k: every comparable regime on the same seeds and test examples."""

    task: str
    k: int
    seeds: list[int]
    examples: int
    regimes: list[str]
    accuracy: dict[str, tuple[float, float, float]]  # mean, CI low, CI high
    best: str
    difference: dict[str, tuple[float, float, float]]  # regime − best: mean, CI low, CI high
    probability_best: dict[str, float]
    seed_p: dict[str, float]  # seed-level paired test against the best
    left_out: dict[str, str] = field(default_factory=dict)  # regime -> why it is not compared

    def tied(self, regime: str) -> bool:
        """Not distinguishable from the best: the CI of the difference contains 0."""
        low, high = self.difference[regime][1:]
        return regime != self.best and low <= 0 <= high


def compare(cells: pd.DataFrame, task: str, k: int, seed: int = 0) -> Comparison | None:
    """The comparison of every regime with predictions on `task` at `k` (None when fewer than one has them)."""
    at = cells[(cells["task"] == task) & ((cells["k"] == k) | ~cells["seeded"])]
    if at.empty:
        return None
    rows = per_seed(at)
    rows = rows[rows["predictions"].map(bool)]
    if rows.empty:
        return None
    seeded = rows[rows["seeded"]]
    sets = {r: frozenset(g["seed"]) for r, g in seeded.groupby("regime")}
    common = Counter(sets.values()).most_common(1)[0][0] if sets else frozenset({0})
    left_out, columns = {}, {}
    for regime, g in rows.groupby("regime"):
        if g["seeded"].all() and not common <= sets[regime]:
            left_out[regime] = f"seeds {sorted(int(s) for s in sets[regime])}, not {sorted(int(s) for s in common)}"
            continue
        by_seed = {s: correctness(p) for s, p in zip(g["seed"], g["predictions"])}
        columns[regime] = [by_seed[s] if g["seeded"].all() else next(iter(by_seed.values())) for s in sorted(common)]
    ids = None
    for per in columns.values():
        for series in per:
            ids = series.index if ids is None else ids.intersection(series.index)
    regimes = sorted(columns, key=regime_order)
    scores = np.array([[per[i].loc[ids].to_numpy() for i in range(len(per))] for per in (columns[r] for r in regimes)])
    resampled = hierarchical_bootstrap(scores, seed=seed)
    means = scores.mean(axis=(1, 2))
    best_index = int(np.argmax(means))
    best = regimes[best_index]
    accuracy = {r: (float(means[i]), *percentile_interval(resampled[:, i])) for i, r in enumerate(regimes)}
    difference = {r: (float(means[i] - means[best_index]),
                      *percentile_interval(resampled[:, i] - resampled[:, best_index])) for i, r in enumerate(regimes)}
    winners = np.argmax(resampled, axis=1)
    probability = {r: float(np.mean(winners == i)) for i, r in enumerate(regimes)}
    per_seed_acc = scores.mean(axis=2)
    seed_p = {r: seed_level_p_value(per_seed_acc[i], per_seed_acc[best_index]) if r != best else 1.0
              for i, r in enumerate(regimes)}
    return Comparison(task, k, sorted(int(s) for s in common), len(ids), regimes, accuracy, best, difference,
                      probability, seed_p, left_out)


def regime_costs(cells: pd.DataFrame, task: str, k: int) -> dict[str, dict[str, float]]:
    """Mean cost per regime: train seconds, stored bytes, inference FLOPs per example, FLOPs to train and answer
    1000 examples."""
    at = cells[(cells["task"] == task) & ((cells["k"] == k) | ~cells["seeded"])]
    out = {}
    for regime, g in at.groupby("regime"):
        out[regime] = {"train_s": float(g["cost_train_wall_time_s"].mean()),
                       "stored_bytes": float(g["cost_stored_bytes_per_task"].mean()),
                       "inference_flops": float(g["cost_inference_flops_per_example"].mean()),
                       "flops_1000": float((g["cost_train_flops"] + 1000 * g["cost_inference_flops_per_example"]).mean())}
    return out


def verdict_lines(cells: pd.DataFrame, ks: list[int] | None = None, max_cost: float | None = None,
                  crossover: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One paragraph per task and k, written from the comparison and the costs alone."""
    lines = []
    for task in sorted(cells["task"].unique()):
        task_ks = sorted(k for k in cells.loc[(cells["task"] == task) & cells["seeded"], "k"].unique())
        for k in (ks if ks else task_ks):
            if k not in task_ks:
                continue
            costs = regime_costs(cells, task, k)
            allowed = cells
            if max_cost is not None:
                over = [r for r, c in costs.items() if c["flops_1000"] > max_cost]
                allowed = cells[~cells["regime"].isin(over)]
            result = compare(allowed, task, k)
            if result is None or len(result.regimes) < 2:
                continue
            lines.append(_paragraph(result, costs, max_cost, crossover or {}))
    return lines


def model_lines(cells: pd.DataFrame, k: int) -> list[str]:
    """Per task that several models ran at k: each model's best regime among the regimes all of them ran, and
    whether the choice depends on the model."""
    lines = []
    for task in sorted(cells["task"].unique()):
        results = {model: compare(group, task, k) for model, group in cells[cells["task"] == task].groupby("model")}
        results = {m: r for m, r in results.items() if r is not None}
        if len(results) < 2:
            continue
        shared = sorted(set.intersection(*(set(r.regimes) for r in results.values())))
        if len(shared) < 2:
            continue
        picks = {m: max(shared, key=lambda regime: r.accuracy[regime][0]) for m, r in results.items()}
        said = "; ".join(f"{m}: **{picks[m]}** ({100 * r.accuracy[picks[m]][0]:.1f} %)" for m, r in results.items())
        verdict = ("the same choice for every model" if len(set(picks.values())) == 1
                   else "the choice depends on the model")
        lines.append(f"**{task}, k = {k}**, among the regimes every model ran ({', '.join(shared)}): {said}: {verdict}.")
    return lines


def _paragraph(c: Comparison, costs: dict[str, dict[str, float]], max_cost: float | None,
               crossover: dict[tuple[str, str], str]) -> str:
    acc = c.accuracy[c.best]
    runner = max((r for r in c.regimes if r != c.best), key=lambda r: c.accuracy[r][0])
    d = c.difference[runner]
    margin = -d[0], -d[2], -d[1]  # best − runner-up
    clear = margin[1] > 0
    text = (f"**{c.task}, k = {c.k}** ({len(c.seeds)} seeds, {c.examples} test examples"
            + (f", regimes costing at most {max_cost:.2g} FLOPs" if max_cost is not None else "") + "): "
            f"use **{c.best}**, {100 * acc[0]:.1f} % (95 % CI {100 * acc[1]:.1f}–{100 * acc[2]:.1f}). "
            f"It beats the runner-up, {runner}, by {100 * margin[0]:+.1f} points (95 % CI {100 * margin[1]:+.1f} to "
            f"{100 * margin[2]:+.1f}; seed-level p = {c.seed_p[runner]:.2g})"
            + ("" if clear else ": not a clear win, the interval includes 0") +
            f"; it is the best regime in {100 * c.probability_best[c.best]:.0f} % of bootstrap resamples.")
    mine = costs.get(c.best)
    if mine:
        text += (f" It costs {mine['train_s']:.0f} s of training, stores {_bytes(mine['stored_bytes'])} per task and "
                 f"{mine['inference_flops']:.2g} FLOPs per test example.")
    close = [r for r in c.regimes if r != c.best and c.accuracy[r][0] >= acc[0] - WITHIN and r in costs]
    if mine and close:
        cheapest = min(close, key=lambda r: costs[r]["flops_1000"])
        if costs[cheapest]["flops_1000"] < mine["flops_1000"]:
            text += (f" {cheapest} is within 1 point ({100 * c.accuracy[cheapest][0]:.1f} %) at "
                     f"{costs[cheapest]['flops_1000'] / mine['flops_1000']:.2g}× its compute (training + 1000 "
                     f"test examples).")
    overtakes = [f"{r} from k = {v}" for (t, r), v in sorted(crossover.items()) if t == c.task and r and v.isdigit()]
    if overtakes:
        text += (f" On the learning curve, fine-tuning overtakes {crossover[(c.task, '')]}: " + ", ".join(overtakes)
                 + ".")
    if c.left_out:
        text += " Not compared: " + "; ".join(f"{r} ({why})" for r, why in sorted(c.left_out.items())) + "."
    return text


def _bytes(value: float) -> str:
    if not math.isfinite(value) or value <= 0:
        return "nothing"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
