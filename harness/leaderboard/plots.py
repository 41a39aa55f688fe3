"""Learning curves and the accuracy-vs-cost scatter (matplotlib, PNG and SVG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.leaderboard.seeds import regime_order  # noqa: E402

plt.rcParams["svg.hashsalt"] = "harness"  # stable SVG ids: rebuilding gives the same files


def learning_curve_plots(curves: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per task with at least two values of k: mean accuracy against k with ±1 std bands."""
    written = []
    for task, c in curves.groupby("task"):
        if c["k"].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for regime in sorted(c["regime"].unique(), key=regime_order):
            line = c[c["regime"] == regime].sort_values("k")
            ax.plot(line["k"], 100 * line["mean"], marker="o", label=regime,
                    linestyle="-" if line["seeded"].all() else "--")
            ax.fill_between(line["k"], 100 * (line["mean"] - line["std"]), 100 * (line["mean"] + line["std"]), alpha=0.15)
        written.append(_finish_log2(fig, ax, sorted(c["k"].unique()), "k (training examples per class)",
                                    "accuracy (%)", f"{task}: accuracy vs k (mean ± std over seeds)",
                                    out / f"learning_curve_{task}"))
    return written


def expected_max_plots(rows: pd.DataFrame, draws: tuple[int, ...], k: int, out: Path) -> list[Path]:
    """One figure per task: each regime's expected best dev accuracy against the number of configurations tried
    (Dodge et al. 2019), up to the configurations it actually compared."""
    written = []
    for task, group in (rows.groupby("task") if not rows.empty else []):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for _, row in sorted(group.iterrows(), key=lambda kv: regime_order(kv[1]["regime"])):
            ns = [n for n in draws if n <= max(row["configurations"], 1)] or [1]
            ax.plot(ns, [100 * row[n] for n in ns], marker="o", label=row["regime"])
        written.append(_finish_log2(fig, ax, list(draws), "configurations tried (random draws from the searched grid)",
                                    "expected best dev accuracy (%)", f"{task}: tuning effort (k = {k})",
                                    out / f"expected_max_{task}"))
    return written


def spectrum_plots(cells: pd.DataFrame, k: int, out: Path) -> list[Path]:
    """One figure per task: each regime's mean accuracy at k against its trainable parameters (log scale; the
    prompting regimes, which train none, at the left edge) — the spectrum from prompting to every weight."""
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]]
    written = []
    for task, group in at_k.groupby("task"):
        points = group.groupby("regime").agg(accuracy=("metric_accuracy", "mean"),
                                             parameters=("cost_trainable_parameters", "mean"))
        points = points[points["accuracy"].notna()]
        if len(points) < 2:
            continue
        floor = max(1.0, points.loc[points["parameters"] > 0, "parameters"].min() / 10) \
            if (points["parameters"] > 0).any() else 1.0
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for regime, row in sorted(points.iterrows(), key=lambda kv: regime_order(kv[0])):
            x = max(row["parameters"], floor)
            ax.scatter(x, 100 * row["accuracy"], marker="s" if row["parameters"] == 0 else "o")
            ax.annotate(regime, (x, 100 * row["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"trainable parameters (log; squares: none, drawn at {floor:.0f})")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{task}: accuracy vs trainable parameters (k = {k})")
        fig.tight_layout()
        written.append(_save(fig, out / f"spectrum_{task}"))
    return written


def forest_plots(comparisons: list, out: Path) -> list[Path]:
    """One figure per task: each regime's difference to the best (points) with its Holm-corrected crossed t
    interval; red where it excludes 0, grey where it is a tie."""
    written = []
    for c in comparisons:
        others = [r for r in c.regimes if r != c.best]
        if not others:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(others) + 1.2))
        for y, regime in enumerate(others):
            mean, low, high = (100 * v for v in c.corrected.get(regime, c.difference[regime]))
            color = "grey" if c.tied(regime) else "tab:red"
            ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(others)), others)
        ax.set_xlabel(f"difference to {c.best} (points)\nHolm-corrected crossed t interval")
        ax.set_title(f"{c.task}, k = {c.k}: against the best ({c.best})")
        fig.tight_layout()
        written.append(_save(fig, out / f"forest_{c.task}"))
    return written


def cost_scatter(cells: pd.DataFrame, k: int, out: Path) -> Path | None:
    """Accuracy against the compute to train once and answer 1000 test examples (log scale)."""
    at_k = cells[(cells["k"] == k) | ~cells["seeded"]].assign(
        compute=lambda c: c["cost_train_flops"] + 1000 * c["cost_inference_flops_per_example"],
        accuracy=lambda c: 100 * c["metric_accuracy"])
    return _scatter(at_k, "compute", "accuracy", "FLOPs: training + 1000 test examples", "accuracy (%)",
                    f"Accuracy vs cost (k = {k}, one point per cell)", out / "accuracy_vs_cost", log_x=True)


def forgetting_scatter(rows: pd.DataFrame, k: int, out: Path) -> Path | None:
    """Per regime, each cell's held-out NLL change (forgetting) against its accuracy gain over zero-shot."""
    rows = rows.dropna(subset=["gain"]).assign(points=lambda r: 100 * r["gain"])
    return _scatter(rows, "nll_change", "points", "held-out NLL change (nats/token; > 0: forgetting)",
                    "accuracy gain over zero-shot (points)", f"Forgetting vs gain (k = {k}, one point per cell)",
                    out / "forgetting_vs_gain", axes_at_zero=True)


def _scatter(rows: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str, stem: Path,
             log_x: bool = False, axes_at_zero: bool = False) -> Path | None:
    """One colour per regime (table order), one point per row."""
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for regime, g in sorted(rows.groupby("regime"), key=lambda kv: regime_order(kv[0])):
        ax.scatter(g[x], g[y], label=regime, alpha=0.7)
    if log_x:
        ax.set_xscale("log")
    if axes_at_zero:
        ax.axvline(0, color="#888", linewidth=0.8)
        ax.axhline(0, color="#888", linewidth=0.8)
    return _finish(fig, ax, xlabel, ylabel, title, stem)


def _finish_log2(fig: plt.Figure, ax: Any, ticks: list, xlabel: str, ylabel: str, title: str, stem: Path) -> Path:
    """A log2 x axis with its ticks labelled as they are, then _finish."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    return _finish(fig, ax, xlabel, ylabel, title, stem)


def _finish(fig: plt.Figure, ax: Any, xlabel: str, ylabel: str, title: str, stem: Path) -> Path:
    """The labels, the legend, a tight layout; saved as PNG and SVG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def _save(fig: plt.Figure, stem: Path) -> Path:
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    fig.savefig(stem.with_suffix(".svg"), metadata={"Date": None})
    plt.close(fig)
    return stem.with_suffix(".png")
