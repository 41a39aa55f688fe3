"""Which regime for this task and budget: comparisons for a crossed design, and the verdict as sentences from the
numbers.

For one task at one k, every regime's per-example correctness is laid out as (seeds × test examples), each seed's
dev-selected template, the same seeds and examples for every regime (a regime that draws nothing, as a zero-shot
without a dev set, repeats its one run for every seed; the seeds are those the regimes share, `common_seeds`). Every
seed scores the *same* items: the design is crossed, not nested. Each accuracy and each difference to the best gets a
t interval from the two-way random-effects ANOVA of that design (stats.crossed_interval: seed and item variance,
Satterthwaite's degrees of freedom); the differences to the best are Holm-corrected as one family. "Best in x % of
resamples" comes from a crossed bootstrap (seeds and items drawn independently, items shared by every seed). The
pick's margin is also measured out of sample: the best is chosen on the first half of the seeds and its margin
measured on the others. Beside it the seed-level sign-flip test, whose unit is the draw of k training examples.
Nothing here imports torch.

The rules, as the page states them: a regime is recommended only when every regime the run has elsewhere ran on
that task and k, on the compared seeds, with every template of the task ("incomplete" otherwise); a win is "clear"
only when its Holm-corrected difference to the runner-up excludes 0; otherwise the cheapest regime not
distinguishable from the best is the pick, and the tie is said.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from harness.leaderboard.stats import crossed_bootstrap, crossed_interval, expected_max, holm, seed_level_p_value
from harness.leaderboard.seeds import correctness, per_seed, regime_order

WITHIN = 0.01  # "as good": within one accuracy point of the best
ALPHA = 0.05  # the family-wise error rate of a verdict's comparisons (Holm)
MIN_SEEDS = 5  # a comparison keeps at least this many shared seeds (the whole-model regimes' minimum)


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
    corrected_p: dict[str, float] = field(default_factory=dict)  # Holm-adjusted, difference to the best
    # the difference's interval at its Holm step's level, 1 - alpha / (comparisons - rank of its raw p)
    corrected: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    holdout: tuple[str, str, float, float, float] | None = None  # chosen on half the seeds: (pick, runner-up,
    #                                                              margin, low, high) on the other half

    def tied(self, regime: str) -> bool:
        """Not distinguishable from the best: its Holm-corrected difference to the best does not exclude 0."""
        return regime != self.best and self.corrected_p.get(regime, 1.0) >= ALPHA


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
    common = common_seeds(sets)
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
    means = scores.mean(axis=(1, 2))
    best_index = int(np.argmax(means))
    best = regimes[best_index]
    accuracy = {r: crossed_interval(scores[i])[:3] for i, r in enumerate(regimes)}
    tests = {r: crossed_interval(scores[i] - scores[best_index]) for i, r in enumerate(regimes)}
    difference = {r: tests[r][:3] for r in regimes}
    raw_p = {r: tests[r][3] for r in regimes if r != best}
    corrected = holm(raw_p)
    ranked = sorted(raw_p, key=raw_p.get)
    intervals = {r: crossed_interval(scores[regimes.index(r)] - scores[best_index],
                                     1 - ALPHA / (len(ranked) - ranked.index(r)))[:3] for r in ranked}
    winners = np.argmax(crossed_bootstrap(scores, seed=seed), axis=1)
    probability = {r: float(np.mean(winners == i)) for i, r in enumerate(regimes)}
    per_seed_acc = scores.mean(axis=2)
    seed_p = {r: seed_level_p_value(per_seed_acc[i], per_seed_acc[best_index]) if r != best else 1.0
              for i, r in enumerate(regimes)}
    return Comparison(task, k, sorted(int(s) for s in common), len(ids), regimes, accuracy, best, difference,
                      probability, seed_p, left_out, corrected_p=corrected, holdout=_holdout(scores, regimes),
                      corrected=intervals)


def common_seeds(sets: dict[str, frozenset]) -> frozenset:
    """The seeds a comparison uses: the largest regimes' seeds first, narrowed by each further regime's as long as
    at least MIN_SEEDS remain (or as many as the largest regime has, when it has fewer): 10-seed prompting and
    5-seed fine-tuning meet on the 5 shared seeds, while a regime that ran one seed is left out, not the rest cut
    to it."""
    if not sets:
        return frozenset({0})
    floor = min(MIN_SEEDS, max(len(s) for s in sets.values()))
    common = None
    for regime in sorted(sets, key=lambda r: (-len(sets[r]), regime_order(r), r)):
        narrowed = sets[regime] if common is None else common & sets[regime]
        if len(narrowed) >= floor:
            common = narrowed
    return common


def _holdout(scores: np.ndarray, regimes: list[str]) -> tuple[str, str, float, float, float] | None:
    """The winner's curse measured: the best and the runner-up chosen on the first half of the seeds, the margin
    between them (with its crossed interval) on the other half. None below two seeds or two regimes."""
    seeds = scores.shape[1]
    if seeds < 2 or len(regimes) < 2:
        return None
    half = seeds // 2
    chosen = scores[:, :half].mean(axis=(1, 2))
    order = np.argsort(-chosen, kind="stable")
    pick, runner = int(order[0]), int(order[1])
    margin = crossed_interval(scores[pick, half:] - scores[runner, half:])
    return regimes[pick], regimes[runner], *margin[:3]


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
                  crossover: dict[tuple[str, str], str] | None = None, required: Sequence[str] = ()) -> list[str]:
    """One paragraph per task and k, written from the comparison and the costs alone. `required`: regimes (base
    names) the verdict needs beside those the cells hold; a task where one did not run is incomplete."""
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
            at_k = allowed[(allowed["k"] == k) | ~allowed["seeded"]]
            compared = set(at_k.loc[at_k["regime"].isin(result.regimes), "base_regime"])
            missing = sorted((set(at_k["regime"]) - set(result.regimes) - set(result.left_out))
                             | (set(required) - compared), key=regime_order)
            ran = set(at_k.loc[at_k["regime"].isin(result.left_out), "base_regime"]) | set(result.left_out)
            lines.append(_paragraph(result, costs, max_cost, crossover or {}, [r for r in missing if r not in ran],
                                    [r for r in missing if r in ran], _fewer_templates(at_k, result))
                         + _equal_effort(at_k, result))
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


def _fewer_templates(cells: pd.DataFrame, c: Comparison) -> list[str]:
    """The compared regimes that, on some compared seed, chose their template among fewer templates than the task
    has in these cells: their dev choice had a smaller menu, so the comparison is not yet like for like."""
    at = cells[cells["task"] == c.task]
    everything = at["template"].nunique()
    fewer = []
    for regime in c.regimes:
        rows = at[at["regime"] == regime]
        rows = rows[rows["seed"].isin(c.seeds)] if rows["seeded"].all() else rows
        if (rows.groupby("seed", dropna=False)["template"].nunique() < everything).any():
            fewer.append(regime)
    return fewer


def _paragraph(c: Comparison, costs: dict[str, dict[str, float]], max_cost: float | None,
               crossover: dict[tuple[str, str], str], missing: list[str], short: list[str], fewer: list[str]) -> str:
    acc = c.accuracy[c.best]
    runner = max((r for r in c.regimes if r != c.best), key=lambda r: c.accuracy[r][0])
    d = c.difference[runner]
    margin = 0.0 - d[0], 0.0 - d[2], 0.0 - d[1]  # best − runner-up; -0.0 would print a tie as "-0.0 points"
    clear = not c.tied(runner)
    tied = [r for r in c.regimes if r == c.best or c.tied(r)]
    pick = min((r for r in tied if r in costs), key=lambda r: costs[r]["flops_1000"], default=c.best)
    head = (f"**{c.task}, k = {c.k}** ({len(c.seeds)} seeds, {c.examples} test examples"
            + (f", regimes costing at most {max_cost:.2g} FLOPs" if max_cost is not None else "") + "): ")
    if missing or short or fewer:
        why = ([f"{', '.join(missing)} did not run here"] if missing else []) + (
            [f"{', '.join(short)} ran on other or too few seeds"] if short else []) + (
            [f"{', '.join(fewer)} ran with fewer of the task's templates"] if fewer else [])
        head += f"**incomplete**: {'; '.join(why)}, so no regime is recommended; among those compared, "
    elif clear:
        head += f"**clear**: use **{c.best}**; "
    else:
        head += (f"**tie — pick the cheaper**: {', '.join(tied)} are not distinguishable; the cheapest of them is "
                 f"**{pick}**; ")
    text = (head + f"the best mean is {c.best}, {100 * acc[0]:.1f} % (95 % CI {100 * acc[1]:.1f}–{100 * acc[2]:.1f}), "
            f"{100 * margin[0]:+.1f} points over the runner-up, {runner} (95 % CI {100 * margin[1]:+.1f} to "
            f"{100 * margin[2]:+.1f}; Holm-corrected p = {c.corrected_p.get(runner, 1.0):.2g} over "
            f"{len(c.regimes) - 1} comparisons; seed-level p = {c.seed_p[runner]:.2g}); it is the best regime in "
            f"{100 * c.probability_best[c.best]:.0f} % of crossed-bootstrap resamples.")
    if c.holdout is not None:
        chosen, second, value, low, high = c.holdout
        text += (f" Out of sample (chosen on the first half of the seeds, measured on the rest): {chosen} over "
                 f"{second} by {100 * value:+.1f} points (95 % CI {100 * low:+.1f} to {100 * high:+.1f}).")
    mine = costs.get(c.best)
    if mine:
        text += (f" {c.best} costs {mine['train_s']:.0f} s of training, stores {_bytes(mine['stored_bytes'])} per "
                 f"task and {mine['inference_flops']:.2g} FLOPs per test example.")
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


def _equal_effort(cells: pd.DataFrame, c: Comparison) -> str:
    """The best and the runner-up compared at an equal search: each one's expected best dev accuracy when only as
    many configurations were tried as the smaller of their grids (Dodge et al. 2019); '' when a grid is unknown."""
    runner = max((r for r in c.regimes if r != c.best), key=lambda r: c.accuracy[r][0])
    grids = {}
    for regime in (c.best, runner):
        recorded = cells.loc[(cells["task"] == c.task) & (cells["regime"] == regime), "dev_configurations"]
        grids[regime] = [json.loads(g) for g in recorded if isinstance(g, str) and json.loads(g)]
    if not all(grids.values()):
        return ""
    sizes = {r: min(len(g) for g in gs) for r, gs in grids.items()}
    if len(set(sizes.values())) == 1:
        return ""
    n = min(sizes.values())
    means = {r: sum(expected_max(g, n) for g in gs) / len(gs) for r, gs in grids.items()}
    return (f" At an equal search of {n} configuration{'s' * (n > 1)} (they searched {sizes[c.best]} and "
            f"{sizes[runner]}), the expected best dev accuracy is {100 * means[c.best]:.1f} % for {c.best} and "
            f"{100 * means[runner]:.1f} % for {runner}.")


def _bytes(value: float) -> str:
    if not math.isfinite(value) or value <= 0:
        return "nothing"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
