"""The leaderboard's tables, computed from the tidy cells: main, learning curve, cost, calibration, templates."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.leaderboard.collect import load_predictions
from harness.leaderboard.seeds import per_seed, regime_order
from harness.leaderboard.stats import brier_score, expected_calibration_error, mean_with_ci
from harness.leaderboard.verdict import compare
from harness.metrics import METRICS, shown_metrics
from harness.regimes import (freezing_depth, in_context_reference, no_transfer_reference,
                             untouched_reference)

COLLAPSE = 0.9  # a cell whose most predicted class takes this share of its predictions is flagged


@dataclass
class Table:
    """Header, rows of (text, bold) cells, and footnotes; rendered by render.py."""

    title: str
    header: list[str]
    rows: list[list[tuple[str, bool]]]
    notes: list[str] = field(default_factory=list)
    key: str = ""


def _fmt(mean: float, std: float, n: int) -> str:
    """mean ± std (n); a single run has no spread to show, so it is mean (1)."""
    if n == 1:
        return f"{100 * mean:.1f} (1)"
    return f"{100 * mean:.1f} ± {100 * std:.1f} ({n})"


def _p_text(p: float) -> str:
    """p = 0.0928, or only the bound below 0.001 (the random-sign test's floor is 1 / (PERMUTATIONS + 1))."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _sign_flip_floor(seed_counts: set[int]) -> str:
    """'; with 5 seeds no p is below 0.0625': the exact two-sided sign-flip test's smallest p, 2 / 2^seeds."""
    said = [f"{n} seeds no p is below {2 / 2 ** n:.3g}" for n in sorted(seed_counts) if n > 1]
    return "; with " + ", with ".join(said) if said else ""


def main_table(cells: pd.DataFrame, k: int) -> Table:
    """Regimes and baselines × tasks at the headline k: mean ± sample std over seeds, best bold, ties marked."""
    seeds = per_seed(cells)
    at_k = seeds[(seeds["k"] == k) | ~seeds["seeded"]]
    tasks = sorted(at_k["task"].unique())
    regimes = sorted(at_k["regime"].unique(), key=regime_order)
    stats_by = {(t, r): g for (t, r), g in at_k.groupby(["task", "regime"])}
    means = {key: g["accuracy"].mean() for key, g in stats_by.items()}

    rows, notes, pvalues = [], [], []
    best = {t: max((r for r in regimes if (t, r) in means), key=lambda r: means[(t, r)]) for t in tasks}
    ties, seed_counts = {}, set()
    for t in tasks:
        comparison = compare(cells, t, k)
        if comparison is None:
            continue
        seed_counts.add(len(comparison.seeds))
        best[t] = comparison.best  # the best of the regimes compared on the same seeds and items
        notes += [f"{t}: {r} is not compared ({why}), so it is not bold however high its mean."
                  for r, why in sorted(comparison.left_out.items())]
        for r in comparison.regimes:
            if r == comparison.best:
                continue
            ties[(t, r)] = comparison.tied(r)
            d = comparison.difference[r]
            pvalues.append(f"{t}: {r} − {comparison.best} {100 * d[0]:+.1f} ({100 * d[1]:+.1f} … {100 * d[2]:+.1f}), "
                           f"Holm {_p_text(comparison.corrected_p[r])}, seed-level {_p_text(comparison.seed_p[r])}")
    for r in regimes:
        row = [(r, False)]
        for t in tasks:
            g = stats_by.get((t, r))
            if g is None:
                row.append(("—", False))
                continue
            std = g["accuracy"].std(ddof=1) if len(g) > 1 else 0.0
            text = _fmt(g["accuracy"].mean(), std, len(g)) + (" †" if ties.get((t, r)) else "")
            text += " ‡" if (g["largest_class_share"] >= COLLAPSE).any() else ""
            text += " §" if (g["warn_edge"] | g["warn_last_step"]).any() else ""
            row.append((text, best[t] == r))
        present = [means[(t, r)] for t in tasks if (t, r) in means]
        row.append((f"{100 * np.mean(present):.1f}" if len(present) == len(tasks) else "—", False))
        rows.append(row)
        if len(present) < len(tasks):
            missing = [t for t in tasks if (t, r) not in means]
            notes.append(f"— {r} has no cells for {', '.join(missing)} at k = {k} in these runs.")
    for name, fn in (("majority", _majority), ("random", _random)):
        values = {t: fn(cells, t) for t in tasks}
        row = [(name, False)] + [(f"{100 * values[t]:.1f}" if values[t] is not None else "—", False) for t in tasks]
        known = [v for v in values.values() if v is not None]
        row.append((f"{100 * np.mean(known):.1f}" if len(known) == len(tasks) else "—", False))
        rows.append(row)
    notes = [
        f"Accuracy (%) at k = {k} examples per class — labelled examples used: k to train and k to select on (dev), "
        f"2k = {2 * k} per class ({_zero_shot_dev_note(at_k, k)}): mean ± sample standard "
        "deviation (ddof = 1) over seeds, number of seeds in brackets (one run, as for a zero-shot that compares "
        "no templates and so draws nothing, has no std). Where a task has several templates, each seed's "
        "template is the one with the best dev accuracy, then the lowest dev loss, then the first by name (else "
        "the mean over templates).",
        "Bold: best regime per task among those compared on the same seeds and items. †: not distinguishable "
        "from the best: its difference to the best is not "
        "significant after Holm's correction over the task's comparisons (α = 0.05), by a t test for the crossed "
        "design (every seed scores the same test items: the two-way random-effects ANOVA of seeds × items, "
        "Satterthwaite's degrees of freedom), which counts the variance of a new draw of k training examples and of "
        "a new test set. Beside it, a two-sided exact sign-flip test of the per-seed accuracy differences "
        f"(seed-level{_sign_flip_floor(seed_counts)}).",
        "majority: always the most frequent class of the test examples used; random: expected accuracy of a "
        "uniform guess (1 / classes).",
        f"‡: in at least one seed one class takes ≥ {COLLAPSE:.0%} of the predictions (see Prediction balance).",
        "§: in at least one seed the regime chose a hyperparameter on its grid's edge, or its best dev checkpoint "
        "was the last step of its budget (see Selection checks).",
        *notes,
    ]
    if pvalues:
        notes.append("Differences to the best in points (95 % crossed t interval), Holm-corrected p and seed-level "
                     "p-values: " + "; ".join(pvalues) + ".")
    return Table(f"Main table (k = {k})", ["regime", *tasks, "average"], rows, notes, key="main")


FLAGS = {"flag_first_evaluation": "best = first evaluation", "flag_cannot_stop": "early stopping could not stop",
         "flag_not_searched": "one-value grid (not searched)", "flag_class_never_predicted": "a class never predicted",
         "flag_zero_recall": "a class with zero recall"}


def selection_table(cells: pd.DataFrame, k: int) -> Table:
    """Per task × regime at the headline k, the selections a reviewer would question, seed by seed."""
    seeds = per_seed(cells)
    at_k = seeds[(seeds["k"] == k) | ~seeds["seeded"]]
    raw = cells[(cells["k"] == k) | ~cells["seeded"]]
    rows = []
    for (task, regime), g in sorted(at_k.groupby(["task", "regime"]), key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        edge, last = int(g["warn_edge"].sum()), int(g["warn_last_step"].sum())
        counts = {flag: int(g[flag].sum()) if flag in g else 0 for flag in FLAGS}
        rho = _dev_test_correlation(raw[(raw["task"] == task) & (raw["regime"] == regime)])
        flagged = [(f"{counts[f]} of {len(g)}", counts[f] > 0) for f in FLAGS]
        if not g["warnings_recorded"].all():
            # cells of harness 0.2 and before did not check their selection; prompting records no such warnings
            if not g["prompting"].iloc[0] or any(counts.values()):
                unchecked = "—" if g["prompting"].iloc[0] else "not recorded"
                rows.append([(task, False), (regime, False), (unchecked, False), (unchecked, False), *flagged,
                             (rho, False)])
        elif edge or last or any(counts.values()) or not g["prompting"].iloc[0]:
            rows.append([(task, False), (regime, False), (f"{edge} of {len(g)}", edge > 0),
                         (f"{last} of {len(g)}", last > 0), *flagged, (rho, False)])
    notes = ["Seeds (their dev-selected template) whose regime chose a value on the edge of its grid (head's C, a "
             "learning rate, a mitigation's strength, ...), and whose best dev checkpoint was the last step of a run "
             "that was not stopped early: either suggests the grid or the budget was too small. Best = first "
             "evaluation: the best dev checkpoint was the first check of a run that went on (dev only got worse: too "
             "high a rate, or overfitting at once). Early stopping could not stop: the budget's dev cadence × "
             "(patience + 1) reaches its last step, so every run trained to the end whatever dev said. One-value grid:"
             " nothing was searched on that axis (its edge cannot be judged). A class never predicted: at least one "
             "class got none of the test predictions; zero recall: at least one class had none of its test examples "
             "predicted right (never predicted, or always wrong). Prompting regimes are listed only when flagged. "
             "Dev–test ρ: Spearman correlation between dev and test accuracy over the regime's cells (seeds × "
             "templates) — how far selecting on a dev set of k examples per class can be trusted (— with fewer than 3 "
             "cells or no spread)."]
    return Table(f"Selection checks (k = {k})", ["task", "regime", "grid edge chosen", "best step = last step",
                                                 *FLAGS.values(), "dev–test ρ"], rows, notes, key="selection")


def _dev_test_correlation(group: pd.DataFrame) -> str:
    from scipy.stats import spearmanr

    pairs = group[["dev_accuracy", "metric_accuracy"]].astype(float).dropna()
    if len(pairs) < 3 or pairs["dev_accuracy"].nunique() < 2 or pairs["metric_accuracy"].nunique() < 2:
        return "—"
    return f"{spearmanr(pairs['dev_accuracy'], pairs['metric_accuracy']).statistic:+.2f}"


def balance_table(cells: pd.DataFrame, k: int) -> Table:
    """Per task × regime at the headline k: every metric the tasks list, and how much one class dominates."""
    seeds = per_seed(cells)
    at_k = seeds[(seeds["k"] == k) | ~seeds["seeded"]]
    metrics = shown_metrics([c.removeprefix("metric_") for c in cells.columns if c.startswith("metric_")])
    rows = []
    for (task, regime), g in sorted(at_k.groupby(["task", "regime"]), key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        share = g["largest_class_share"].astype(float)
        collapsed = int((share >= COLLAPSE).sum())
        rows.append([(task, False), (regime, False),
                     *((_metric_text(m, g[m]) if m in g and g[m].notna().any() else "—", False) for m in metrics),
                     (f"{100 * share.mean():.1f}" if share.notna().any() else "—", False),
                     (f"{collapsed} of {len(g)}", collapsed > 0),
                     ("not counted" if g["tied_predictions"].isna().any() else f"{int(g['tied_predictions'].sum())}",
                      False)])
    notes = [f"Means over seeds (each seed's dev-selected template). Largest class share: the share of the test "
             f"predictions that go to the most predicted class (1 / classes when balanced); bold where at least one "
             f"seed puts ≥ {COLLAPSE:.0%} on one class. Tied predictions: test examples (summed over seeds) whose "
             "top two classes had exactly equal probability; harness 0.4 breaks each tie by a stable hash of the "
             "example id (before, every tie went to class 0, uncounted)."]
    return Table(f"Prediction balance (k = {k})", ["task", "regime", *(_metric_header(m) for m in metrics),
                                                   "largest class share %", f"seeds ≥ {COLLAPSE:.0%} one class",
                                                   "tied predictions"],
                 rows, notes, key="balance")


def _metric_header(name: str) -> str:
    label = {"accuracy": "accuracy", "macro_f1": "macro-F1"}.get(name, name.replace("_", " "))
    return f"{label} %" if METRICS[name].rate else label


def _metric_text(name: str, values: pd.Series) -> str:
    mean = values.astype(float).mean()
    return f"{100 * mean:.1f}" if METRICS[name].rate else f"{mean:.3f}"


def _zero_shot_dev_note(at_k: pd.DataFrame, k: int) -> str:
    """What labels the prompting regimes that learn from none saw: each seed's dev set, or (in runs of harness
    0.2 and before) one dev set drawn with seed 0."""
    unseeded = at_k[at_k["prompting"] & ~at_k["seeded"] & (at_k["rule"] == "dev")]
    if not unseeded.empty:
        return ("zero-shot learns from none, but picks among templates on a dev set of up to 16 labelled examples "
                "per class drawn with seed 0; dev-prior reads those inputs, not their labels")
    return (f"zero-shot learns from none; where it compares templates or calibrates with dev-prior it uses each "
            f"seed's dev set, the same k = {k} labelled examples per class the other regimes select on (dev-prior "
            "reads their inputs only)")


def _majority(cells: pd.DataFrame, task: str) -> float | None:
    paths = [p for p in cells[cells["task"] == task]["predictions"] if isinstance(p, str)]
    if not paths:
        return None
    gold = load_predictions(paths[0])["gold"]
    return float(gold.value_counts().iloc[0] / len(gold))


def _random(cells: pd.DataFrame, task: str) -> float | None:
    paths = [p for p in cells[cells["task"] == task]["predictions"] if isinstance(p, str)]
    if not paths:
        return None
    return 1.0 / len(load_predictions(paths[0])["probs"].iloc[0])


def transfer_table(cells: pd.DataFrame) -> Table:
    """Transfer gain: each regime minus the from-scratch baseline (the same architecture, random weights) at the
    same task and k, per seed (paired), with a bootstrap CI over seeds; negative transfer marked."""
    seeds = per_seed(cells)
    baseline = no_transfer_reference()
    rows = []
    for (task, k), scratch in seeds[seeds["regime"] == baseline].groupby(["task", "k"]):
        by_seed = scratch.set_index("seed")["accuracy"]
        others = seeds[(seeds["task"] == task) & ((seeds["k"] == k) | ~seeds["seeded"]) & (seeds["regime"] != baseline)]
        for regime, g in sorted(others.groupby("regime"), key=lambda kv: regime_order(kv[0])):
            paired = bool(g["seeded"].all())
            if paired:
                diffs = [acc - by_seed[s] for s, acc in zip(g["seed"], g["accuracy"]) if s in by_seed.index]
            else:  # one unseeded cell (zero-shot without a dev set): against each seed, its spread is scratch's alone
                diffs = list(g["accuracy"].iloc[0] - by_seed)
            if not diffs:
                continue
            gain, low, high = mean_with_ci(diffs)
            negative = high < 0
            ci = "—" if math.isnan(low) else f"{100 * low:+.1f} … {100 * high:+.1f}"
            rows.append([(task, False), (str(k), False), (regime, False),
                         (f"{100 * gain:+.1f}" + (" ▼" if negative else ""), negative), (ci, False),
                         (str(len(diffs)) if paired else f"1 cell vs {len(diffs)} (unpaired)", False)])
    notes = [f"Gain = accuracy − {baseline}'s accuracy at the same task and k, paired by seed, in points; 95 % "
             "percentile bootstrap CI over seeds (scipy.stats.bootstrap, 9,999 resamples). A regime that draws no "
             f"examples ran once: its one cell is compared with every {baseline} seed, unpaired, so its interval is "
             f"{baseline}'s seed spread alone. ▼ (bold): negative transfer, the whole CI below 0."]
    return Table("Transfer gain over training from scratch", ["task", "k", "regime", "gain", "95 % CI", "seeds"],
                 rows, notes, key="transfer")


def freezing_table(cells: pd.DataFrame, k: int) -> Table:
    """Accuracy against how many top blocks train (the head alone, its top N, every weight), with the trainable
    parameters, and N* = the fewest blocks within one point of the best depth."""
    at_k = cells[cells["k"] == k].assign(depth=lambda c: c["regime"].map(freezing_depth))
    at_k = at_k[at_k["depth"].notna()]
    seeds = per_seed(at_k) if not at_k.empty else pd.DataFrame(columns=["task"])
    rows = []
    for task, g in seeds.groupby("task"):
        means = g.groupby("regime")["accuracy"].mean()
        if len(means) < 2:
            continue
        depth = {r: freezing_depth(r) for r in means.index}
        params = at_k[at_k["task"] == task].groupby("regime")["cost_trainable_parameters"].mean()
        best = means.max()
        star = min((r for r in means.index if means[r] >= best - 0.01), key=depth.get)
        for regime in sorted(means.index, key=depth.get):
            rows.append([(task, False), (regime, regime == star), ("all" if depth[regime] == math.inf else
                                                                   str(int(depth[regime])), False),
                         (_num(params.get(regime, math.nan)), False), (f"{100 * means[regime]:.1f}", False)])
    notes = ["Mean accuracy over seeds (each seed's dev-selected template) at k = "
             f"{k}; blocks trained = the top N transformer blocks trained with the new head (all: every weight). "
             "Bold: N*, the fewest blocks within 1 point of the best depth."]
    return Table(f"Freezing depth (k = {k})", ["task", "regime", "blocks trained", "trainable params", "accuracy %"],
                 rows, notes, key="freezing")


def shift_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, target task) of --eval-tasks: the cell's own accuracy and its accuracy on the target."""
    rows = []
    for _, cell in cells[cells["shift"].notna()].iterrows():
        for target, measured in json.loads(cell["shift"]).items():
            rows.append({"task": cell["task"], "target": target, "regime": cell["regime"], "k": cell["k"],
                         "seed": cell["seed"], "template": cell["template"], "in_domain": cell["metric_accuracy"],
                         "out_of_domain": measured["metrics"]["accuracy"], "n": measured["n"],
                         "approximate": ", ".join(measured.get("approximate") or []),
                         "left_out": sum((measured.get("left_out") or {}).values()),
                         "shift_predictions": _shift_predictions(cell["predictions"])})
    return pd.DataFrame(rows, columns=["task", "target", "regime", "k", "seed", "template", "in_domain",
                                       "out_of_domain", "n", "approximate", "left_out", "shift_predictions"])


def _shift_predictions(path: str | None) -> str | None:
    """Where a cell's predictions on other tasks sit beside its own (<stem>.shift.jsonl, maybe gzipped)."""
    if not path:
        return None
    own = Path(path)
    stem = own.name.split(".jsonl")[0]
    for name in (f"{stem}.shift.jsonl", f"{stem}.shift.jsonl.gz"):
        if (own.parent / name).is_file():
            return str(own.parent / name)
    return None


def _same_items_accuracy(source_row: pd.Series, target_cells: pd.DataFrame) -> float:
    """The target-trained cells' accuracy (same regime, k and seed) on exactly the target items the source-trained
    cell predicted; NaN when the items are unknown or a target cell did not score all of them."""
    if not source_row["shift_predictions"]:
        return math.nan
    ids = {str(i).partition("::")[2] for i in load_predictions(source_row["shift_predictions"])["id"]}
    seed = source_row["seed"]  # an unseeded cell (plain zero-shot) pairs with the target's unseeded one
    same_seed = target_cells["seed"].isna() if pd.isna(seed) else target_cells["seed"] == seed
    same = target_cells[(target_cells["k"] == source_row["k"]) & same_seed]
    accuracies = []
    for path in same["predictions"].dropna():
        frame = load_predictions(path)
        chosen = frame[frame["id"].astype(str).isin(ids)]
        if len(chosen) < len(ids):
            return math.nan
        accuracies.append(float((chosen["gold"] == chosen["pred"]).mean()))
    return float(np.mean(accuracies)) if accuracies else math.nan


def shift_table(cells: pd.DataFrame, k: int) -> Table:
    """Domain shift: per source → target and regime, accuracy on the source's test split, on the target's (read
    through the target file's label and field maps), the drop, and the target's own cells at the same k."""
    shifted = shift_rows(cells[(cells["k"] == k) | ~cells["seeded"]])
    rows, notes = [], []
    own = cells[(cells["k"] == k) | ~cells["seeded"]].groupby(["task", "regime"])["metric_accuracy"]
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]]
    for (task, target), pair in shifted.groupby(["task", "target"]):
        for regime, g in sorted(pair.groupby("regime"), key=lambda kv: regime_order(kv[0])):
            drop = g["in_domain"] - g["out_of_domain"]
            target_own = own.mean().get((target, regime), math.nan)
            targets = at_k[(at_k["task"] == target) & (at_k["regime"] == regime)]
            same = np.array([_same_items_accuracy(row, targets) for _, row in g.iterrows()])
            known = ~np.isnan(same)
            gap = (same[known] - g["out_of_domain"].to_numpy()[known]).mean() if known.any() else math.nan
            rows.append([(f"{task} → {target}", False), (regime, False),
                         (_fmt(g["in_domain"].mean(), g["in_domain"].std(ddof=1), len(g)), False),
                         (_fmt(g["out_of_domain"].mean(), g["out_of_domain"].std(ddof=1), len(g)), False),
                         (f"{100 * drop.mean():+.1f}", False),
                         ("—" if math.isnan(target_own) else f"{100 * target_own:.1f}", False),
                         ("— (not on the same items)" if math.isnan(gap) else
                          f"{100 * gap:+.1f} ({int(known.sum())})", math.isnan(gap) and not math.isnan(target_own)),
                         (str(len(g)), False)])
        first = pair.iloc[0]
        note = f"{task} → {target}: {first['n']} {target} test examples"
        if first["left_out"]:
            note += f" ({first['left_out']} left out: their label has no {task} label)"
        if first["approximate"]:
            note += f"; mapped approximately: {first['approximate']}"
        notes.append(note + ".")
    notes.insert(0, f"k = {k}; mean ± std over cells (seeds × templates). Out-of-domain: the cell trained (or "
                    "prompted, with the same demos) on the source task, scored on the target's test split read through "
                    "the target task file's domain_shift maps. Drop = in-domain − out-of-domain (points). Target-trained: "
                    "the same regime's own cells on the target task at the same k, over the target's whole test subset and all "
                    "its classes (— when the run has none). The drop compares two different test sets (the source's and "
                    "the target's); the shift gap does not: target-trained − source-trained accuracy on the same target "
                    "items (those the source's labels map to), paired by seed, in points (the seeds paired in "
                    "brackets); bold when the run has target-trained cells that did not score those items.")
    return Table(f"Domain shift (k = {k})", ["source → target", "regime", "in-domain %", "out-of-domain %", "drop",
                                             "target-trained %", "shift gap, same items", "cells"], rows, notes,
                 key="shift")


def forgetting_rows(cells: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per cell at k measured by --forgetting: its accuracy, the held-out NLL change and each watched
    task's zero-shot accuracy change, with their 95 % paired bootstrap intervals, and its gain over zero-shot (the
    untouched model's plain zero-shot cells at k, or its unseeded ones)."""
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]]
    zero_shot = at_k[at_k["regime"] == untouched_reference()].groupby("task")["metric_accuracy"].mean()
    rows = []
    for _, cell in at_k[at_k["forgetting"].notna() & (at_k["k"] == k)].iterrows():
        measured = json.loads(cell["forgetting"])
        nll = measured["nll_per_token"]
        probes = measured.get("zero_shot") or {}
        unusable = {name: why for name, w in probes.items() if (why := probe_problem(name, w))}
        watched = {name: w for name, w in probes.items() if name not in unusable}
        rows.append({"task": cell["task"], "regime": cell["regime"], "k": cell["k"], "seed": cell["seed"],
                     "template": cell["template"], "accuracy": cell["metric_accuracy"],
                     "gain": cell["metric_accuracy"] - zero_shot.get(cell["task"], math.nan),
                     "nll_change": nll["change"], "nll_significant": nll["ci95"][0] > 0 or nll["ci95"][1] < 0,
                     "nll_before": nll["before"],
                     "zero_shot_change": np.mean([w["change"] for w in watched.values()]) if watched else math.nan,
                     "zero_shot_drops": sum(w["ci95"][1] < 0 for w in watched.values()), "watched": len(watched),
                     "watched_tasks": ", ".join(sorted(watched)),
                     "unusable": ", ".join(f"{name} ({why})" for name, why in sorted(unusable.items()))})
    return pd.DataFrame(rows, columns=["task", "regime", "k", "seed", "template", "accuracy", "gain", "nll_change",
                                       "nll_significant", "nll_before", "zero_shot_change", "zero_shot_drops",
                                       "watched", "watched_tasks", "unusable"])


def probe_problem(task: str, watched: dict) -> str | None:
    """Why a watched task's zero-shot accuracy cannot show forgetting: the untouched model answers it with one
    class (collapsed: ≥ COLLAPSE of its predictions), or not above chance (one-sided binomial test, p > 0.05)."""
    from scipy.stats import binomtest

    share = watched.get("largest_class_share_before")
    if share is not None and share >= COLLAPSE:
        return f"collapsed: {share:.0%} one class"
    classes = watched.get("classes")
    if classes is None:  # results before harness 0.5 did not record it: the task file says
        from harness.tasks import load_task

        try:
            classes = len(load_task(task).label_names)
        except Exception:  # an unknown task: its chance level cannot be judged
            return None
    n = int(watched["n"])
    if binomtest(round(watched["before"] * n), n, 1 / classes, alternative="greater").pvalue > 0.05:
        return f"at chance: {100 * watched['before']:.1f} % of {n}"
    return None


def forgetting_table(cells: pd.DataFrame, k: int) -> Table:
    """Forgetting against gain, per task and regime that adapts the backbone."""
    measured = forgetting_rows(cells, k)
    rows = []
    for (task, regime), g in sorted(measured.groupby(["task", "regime"]), key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        rows.append([(task, False), (regime, False), (_fmt(g["accuracy"].mean(), g["accuracy"].std(ddof=1), len(g)), False),
                     ("—" if g["gain"].isna().all() else f"{100 * g['gain'].mean():+.1f}", False),
                     (f"{g['nll_change'].mean():+.4f}", False), (f"{int(g['nll_significant'].sum())}/{len(g)}", False),
                     ("—" if g["zero_shot_change"].isna().all() else f"{100 * g['zero_shot_change'].mean():+.1f}",
                      False),
                     (f"{int(g['zero_shot_drops'].sum())}/{int(g['watched'].sum())}", False),
                     (g["unusable"].iloc[0] or "—", bool(g["unusable"].iloc[0]))])
    notes = [] if measured.empty else [
        f"k = {k}; mean over seeds. Gain: accuracy − the untouched model's zero-shot accuracy on the task (points). "
        "Held-out NLL: change in negative log-likelihood per token (nats) of the model as deployed on held-out "
        f"article bodies (reference {measured['nll_before'].iloc[0]:.3f} nats/token); cells whose 95 % paired "
        "bootstrap CI over sequences excludes 0. Zero-shot: change in the untouched model's zero-shot accuracy on "
        f"the watched tasks ({', '.join(sorted({t for ts in measured['watched_tasks'] for t in ts.split(', ') if t}))}; "
        "points, mean over a cell's tasks, each cell leaving its own task out); "
        "drops whose 95 % paired bootstrap CI over examples lies below 0, out of the (cell, task) pairs. "
        f"Probes left out: watched tasks the untouched model answers with one class (≥ {COLLAPSE:.0%} of its "
        "predictions) or not above chance (one-sided binomial test, p > 0.05): they cannot show forgetting, so "
        "they count in neither the Δ nor the drops (bold)."]
    return Table(f"Forgetting vs gain (k = {k})", ["task", "regime", "accuracy %", "gain", "held-out NLL Δ",
                                                   "NLL CI ≠ 0", "zero-shot Δ", "significant drops",
                                                   "probes left out"],
                 rows, notes, key="forgetting")


MITIGATIONS = ("l2sp", "ewc", "replay")  # the variant suffixes of --mitigation (regimes/mitigation.py)


def without_mitigation(label: str) -> tuple[str, str | None]:
    """A label without its mitigation suffix, and the mitigation: "R (ewc)" -> ("R", "ewc"), "R (top2-l2sp)" ->
    ("R (top2)", "l2sp"); (label, None) for a label without one."""
    if not label.endswith(")") or " (" not in label:
        return label, None
    base, variant = label[:-1].split(" (", 1)
    *rest, last = variant.split("-")
    if last not in MITIGATIONS:
        return label, None
    return (f"{base} ({'-'.join(rest)})" if rest else base), last


def t_interval(differences: np.ndarray) -> str:
    """The 95 % t interval of the mean of paired differences, in points ("−1.2 … +3.4"); — below two pairs or
    without spread."""
    from scipy import stats

    if len(differences) < 2 or differences.std(ddof=1) == 0:
        return "—"
    half = stats.t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences))
    return f"{100 * (differences.mean() - half):+.1f} … {100 * (differences.mean() + half):+.1f}"


def _mean_known(values: list[float]) -> float:
    """The mean of the values that are not NaN; NaN when none is (every probe left out)."""
    known = [v for v in values if not math.isnan(v)]
    return float(np.mean(known)) if known else math.nan


def mitigation_table(cells: pd.DataFrame, k: int) -> Table:
    """Each mitigation beside the same regime without it, paired by seed and template: what it costs in accuracy
    and what it saves in forgetting (held-out NLL, the watched tasks' zero-shot accuracy)."""
    measured = forgetting_rows(cells, k)
    split = measured["regime"].map(without_mitigation)
    measured = measured.assign(plain=split.map(lambda s: s[0]), mitigation=split.map(lambda s: s[1]))
    plain = measured[measured["mitigation"].isna()].set_index(["task", "plain", "seed", "template"])
    rows = []
    for (task, regime, mitigation), g in measured[measured["mitigation"].notna()].groupby(
            ["task", "plain", "mitigation"]):
        pairs = [(row, plain.loc[(task, regime, row["seed"], row["template"])]) for _, row in g.iterrows()
                 if (task, regime, row["seed"], row["template"]) in plain.index]
        if not pairs:
            continue
        gained = np.array([m["accuracy"] - p["accuracy"] for m, p in pairs])
        interval = t_interval(gained)
        nll = (np.mean([p["nll_change"] for _, p in pairs]), np.mean([m["nll_change"] for m, _ in pairs]))
        zero = tuple(_mean_known([side["zero_shot_change"] for side in sides]) for sides in zip(*pairs))[::-1]
        rows.append([(task, False), (regime, False), (mitigation, False), (str(len(pairs)), False),
                     (f"{100 * gained.mean():+.1f}", False), (interval, False),
                     (f"{nll[0]:+.4f} → {nll[1]:+.4f}", round(nll[1], 4) < round(nll[0], 4)),
                     ("—" if math.isnan(zero[0]) else f"{100 * zero[0]:+.1f} → {100 * zero[1]:+.1f}", False)])
    notes = [f"k = {k}. Each mitigated cell paired with the same regime's unmitigated cell of the same seed and "
             "template. Accuracy Δ = mitigated − unmitigated (points), with a t interval over the pairs (— below two "
             "pairs or without spread). Held-out NLL Δ and zero-shot Δ as in the forgetting table: unmitigated → "
             "mitigated, means over the pairs; bold where the mitigation lowered the NLL change."]
    return Table(f"Forgetting mitigation, paired (k = {k})", ["task", "regime", "mitigation", "pairs", "accuracy Δ",
                                                             "95 % t interval", "held-out NLL Δ",
                                                             "zero-shot Δ (usable probes)"], rows, notes,
                 key="mitigation")


def continual_table(sequences: list[dict]) -> Table:
    """Per sequence and regime (--sequence): ACC, BWT and FWT over seeds, the accuracy on each task after the last
    one, and for a mitigated regime its ACC and BWT change against the same regime without it, paired by seed; the
    whole matrices are in the run's sequence files."""
    rows = []
    frame = pd.DataFrame(sequences)
    if frame.empty:
        return Table("Continual learning", [], [], [], key="continual")
    frame = frame.assign(order=frame["tasks"].map(" → ".join))
    plain = frame.set_index(["order", "regime", "k", "seed"])
    for (order, regime, k), g in sorted(frame.groupby(["order", "regime", "k"]),
                                        key=lambda kv: (kv[0][0], regime_order(kv[0][1]), kv[0][2])):
        tasks = g["tasks"].iloc[0]
        final = [np.mean([m[-1][i] for m in g["matrix"]]) for i in range(len(tasks))]  # every head exists by then
        summary = []
        for name in ("acc", "bwt", "fwt"):
            values = pd.to_numeric(g[name]).dropna()  # FWT is None with a new head per task
            summary.append(("—" if values.empty else f"{100 * values.mean():{'.1f' if name == 'acc' else '+.1f'}}"
                            + (f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else ""), False))
        unmitigated, mitigation = without_mitigation(regime)
        pairs = [(run, plain.loc[(order, unmitigated, k, run["seed"])]) for _, run in g.iterrows()
                 if mitigation and (order, unmitigated, k, run["seed"]) in plain.index]
        paired = []
        for name in ("acc", "bwt"):
            differences = np.array([m[name] - p[name] for m, p in pairs])
            shown = f"{100 * differences.mean():+.1f} ({t_interval(differences)})" if pairs else "—"
            paired.append((shown, False))
        rows.append([(order, False), (regime, False), (str(k), False), (str(len(g)), False), *summary,
                     (str(len(pairs)) if mitigation else "—", False), *paired,
                     (", ".join(f"{t} {100 * a:.1f}" for t, a in zip(tasks, final)), False)])
    notes = ["One model trained on the tasks in order (harness eval --sequence). ACC: mean accuracy over the tasks "
             "after the last one (%); BWT: mean over the earlier tasks of (accuracy after the last task − accuracy "
             "right after training on it), FWT: mean over the later tasks of (accuracy before training on it − the "
             "untouched model's), in points (Lopez-Paz & Ranzato 2017); mean ± sample std over seeds. Each task is "
             "scored with its first template: as zero-shot does for a regime that answers with the LM, with the "
             "task's own head for a regime with a new head per task (whose FWT is not defined: —). A mitigated "
             "regime's runs are paired with the same regime's unmitigated runs of the same seed: ACC Δ and BWT Δ "
             "= mitigated − unmitigated (points), mean over the pairs with a 95 % t interval (— below two pairs or "
             "without spread)."]
    return Table("Continual learning", ["sequence", "regime", "k", "seeds", "ACC %", "BWT", "FWT", "pairs",
                                        "ACC Δ (95 % t)", "BWT Δ (95 % t)", "accuracy after the last task %"],
                 rows, notes, key="continual")


def learning_curves(cells: pd.DataFrame) -> pd.DataFrame:
    """task, regime, k, mean, std, seeds: accuracy against k (a regime that draws no examples, as zero-shot,
    repeated at every k as a line). Each curve keeps the seeds it has at every one of its k, so that a point does
    not differ from its neighbour by its seed set (when no seed is common to all, every seed stays)."""
    seeds = per_seed(cells)
    for (task, regime), g in seeds[seeds["seeded"]].groupby(["task", "regime"]):
        common = set.intersection(*(set(s["seed"]) for _, s in g.groupby("k")))
        if common:
            seeds = seeds[~((seeds["task"] == task) & (seeds["regime"] == regime) & ~seeds["seed"].isin(common))]
    rows = []
    ks = {task: sorted(k for k in g["k"].unique() if k > 0) for task, g in seeds.groupby("task")}
    for (task, regime, k), g in seeds.groupby(["task", "regime", "k"]):
        draws, prompting = bool(g["seeded"].iloc[0]), bool(g["prompting"].iloc[0])
        for kk in ([k] if draws else ks[task]):
            rows.append({"task": task, "regime": regime, "k": kk, "mean": g["accuracy"].mean(),
                         "std": g["accuracy"].std(ddof=1) if len(g) > 1 else 0.0, "seeds": len(g),
                         "seeded": draws, "prompting": prompting})
    return pd.DataFrame(rows, columns=["task", "regime", "k", "mean", "std", "seeds", "seeded", "prompting"])


def curve_reference(curves: pd.DataFrame, task: str) -> str | None:
    """The in-context prompting curve fine-tuning is compared with on a task: few-shot, or the few-shot variant
    (calibrated, say) with the most k on the curve when plain few-shot has fewer."""
    reference = in_context_reference()
    c = curves[(curves["task"] == task) & curves["regime"].str.startswith(str(reference))]
    counts = c.groupby("regime")["k"].nunique()
    if counts.empty:
        return None
    return max(counts.index, key=lambda regime: (counts[regime], regime == reference))


def crossover_points(curves: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, fine-tuning regime) -> the smallest k at which its mean accuracy exceeds the task's curve_reference at
    the same k (as text: "8", or "never in range (2–32)"); (task, "") -> that reference's name."""
    points = {}
    for task in sorted(curves["task"].unique()):
        c = curves[curves["task"] == task]
        reference = curve_reference(curves, task)
        few = c[c["regime"] == reference].set_index("k")["mean"]
        if len(few) < 2:
            continue
        points[(task, "")] = reference
        for regime in sorted(set(c.loc[~c["prompting"], "regime"]), key=regime_order):
            mine = c[c["regime"] == regime].set_index("k")["mean"]
            ks = sorted(set(mine.index) & set(few.index))
            first = next((k for k in ks if mine[k] > few[k]), None)
            points[(task, regime)] = (str(first) if first is not None else
                                      f"never in range ({min(ks)}–{max(ks)})" if ks else "no shared k")
    return points


def crossover_table(curves: pd.DataFrame) -> Table:
    """Smallest k at which each fine-tuning regime's mean accuracy exceeds few-shot's at the same k."""
    points = crossover_points(curves)
    rows = [[(task, False), (regime, False), (points[(task, "")], False), (label, False)]
            for (task, regime), label in points.items() if regime]
    return Table("Where fine-tuning overtakes few-shot", ["task", "regime", "compared with", "smallest k that beats it"],
                 rows, ["Compared at equal k (examples per class), on mean accuracy over the seeds each curve has at "
                        "every one of its k; with few-shot's variant that has the most k on the curve."],
                 key="crossover")


def cost_table(cells: pd.DataFrame, k: int) -> Table:
    """Per regime at the headline k, averaged over tasks and cells."""
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]]
    rows = []
    for regime, g in sorted(at_k.groupby("regime"), key=lambda kv: regime_order(kv[0])):
        rows.append([(regime, False)] + [(text, False) for text in (
            f"{_num(g['cost_trainable_parameters'].mean())} ({_percent(g['cost_trainable_parameters_percent'].mean())})",
            f"{g['cost_train_wall_time_s'].mean():.1f}",
            _num(g["cost_train_flops"].mean()),
            _num(g["cost_inference_flops_per_example"].mean()),
            f"{g['cost_peak_rss_bytes'].max() / 2**30:.2f}",
            _bytes(g["cost_stored_bytes_per_task"].mean()),
            f"{100 * g['metric_accuracy'].mean():.1f}",
        )])
    header = ["regime", "trainable params (%)", "train s", "train FLOPs", "inference FLOPs / example",
              "peak RSS GiB", "stored / task", "accuracy %"]
    notes = [f"Means over tasks and cells at k = {k}. FLOPs are estimates: 6·N·tokens trained, 2·N·tokens per "
             "forward (N = parameters in the transformer blocks); prompting's inference counts its whole prompt, "
             "demos included. Peak RSS is the process's peak when the cell finished (max over cells)."]
    return Table("Cost", header, rows, notes, key="cost")


def calibration_table(cells: pd.DataFrame, k: int) -> Table:
    """ECE and Brier per task × regime from the stored per-class probabilities."""
    seeds = per_seed(cells)
    at_k = seeds[(seeds["k"] == k) | ~seeds["seeded"]]
    rows = []
    for (task, regime), g in sorted(at_k.groupby(["task", "regime"]), key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        eces, briers = [], []
        for paths in g["predictions"]:
            for path in paths:
                frame = load_predictions(path)
                probs, gold = np.array(frame["probs"].tolist()), frame["gold"].to_numpy()
                eces.append(expected_calibration_error(probs, gold))
                briers.append(brier_score(probs, gold))
        if eces:
            rows.append([(task, False), (regime, False), (f"{np.mean(eces):.3f}", False), (f"{np.mean(briers):.3f}", False)])
    notes = ["ECE: 10 equal-width bins over the top-class probability, weighted by bin size; Brier: mean over "
             "examples of the squared distance between the probabilities and the one-hot gold. Means over cells. "
             "Prompting's probabilities are a softmax over the answers' log-likelihoods."]
    return Table(f"Calibration (k = {k})", ["task", "regime", "ECE", "Brier"], rows, notes, key="calibration")


def template_table(cells: pd.DataFrame, k: int) -> Table:
    """Every regime that ran on several templates (and the prompting regimes, on however many): the spread across
    templates per task, and the dev-selected template's score."""
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]]
    spans = at_k.groupby(["task", "regime"])["template"].transform("nunique")
    chosen_cells = at_k[at_k["prompting"] | (spans >= 2)]
    seeds = per_seed(chosen_cells)
    rows = []
    for (task, regime), g in sorted(chosen_cells.groupby(["task", "regime"]),
                                    key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        by_template = g.groupby("template")["metric_accuracy"].mean()
        chosen = seeds[(seeds["task"] == task) & (seeds["regime"] == regime)]
        selected = chosen["accuracy"].mean() if (chosen["rule"] == "dev").all() else math.nan
        rows.append([(task, False), (regime, False), (str(len(by_template)), False),
                     (f"{100 * by_template.mean():.1f}", False),
                     (f"{100 * (by_template.max() - by_template.min()):.1f}", False),
                     (" / ".join(f"{t} {100 * v:.1f}" for t, v in by_template.items()), False),
                     (f"{100 * selected:.1f}" if not math.isnan(selected) else "—", False)])
    notes = ["Accuracy (%) per template is the mean over seeds; spread = best − worst template. Dev-selected: "
             "each seed takes the template with the best accuracy on that seed's dev set (— when no dev scores)."]
    notes[0] += (" Listed: the prompting regimes, and every other regime whose cells span two templates or more "
                 "(each seed's template is chosen on dev for the other tables too).")
    return Table(f"Template sensitivity (k = {k})",
                 ["task", "regime", "templates", "mean", "spread", "per template", "dev-selected"], rows, notes,
                 key="templates")


def _percent(value: float) -> str:
    return f"{value:.1f} %" if value >= 1 or value == 0 else f"{value:.2g} %"


def _num(value: float) -> str:
    if value != value:
        return "—"
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"
