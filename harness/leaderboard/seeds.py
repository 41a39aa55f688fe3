"""Each seed's cell of a regime: the template chosen on dev (or the mean over templates), with its metrics and
per-example correctness — what every table and the verdict compare."""

from __future__ import annotations

import math

import pandas as pd

from harness.leaderboard.collect import load_predictions
from harness.regimes import order_of


def regime_order(label: str) -> tuple[int, str]:
    """Registry order, then the label (variants after their regime)."""
    return (order_of(label.split(" ")[0]), label)


def per_seed(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, regime, k, seed): the dev-selected template, or the mean over templates.

    Dev selection: the best dev score (the selection metric each cell recorded; accuracy by default), then the lowest
    dev loss, then the first template by name — never the order the files were written in."""
    rows = []
    for key, group in cells.groupby(["model", "task", "regime", "k", "seed"], dropna=False):
        if group["dev_score"].notna().any():
            ranked = group.assign(_acc=group["dev_score"].astype(float).fillna(-math.inf),
                                  _loss=group["dev_loss"].astype(float).fillna(math.inf))
            chosen = ranked.sort_values(["_acc", "_loss", "template"], ascending=[False, True, True]).iloc[[0]]
            rule = "dev"
        else:
            chosen, rule = group, "mean"
        rows.append({
            "model": key[0], "task": key[1], "regime": key[2], "k": key[3], "seed": key[4],
            "seeded": bool(group["seeded"].iloc[0]), "prompting": bool(group["prompting"].iloc[0]),
            "accuracy": chosen["metric_accuracy"].mean(), "templates": ",".join(sorted(chosen["template"])),
            "macro_f1": chosen["metric_macro_f1"].mean() if "metric_macro_f1" in chosen else math.nan,
            **{c.removeprefix("metric_"): chosen[c].mean() for c in chosen.columns
               if c.startswith("metric_") and c not in ("metric_accuracy", "metric_macro_f1")},
            "largest_class_share": chosen["largest_class_share"].astype(float).max(),
            "tied_predictions": chosen["tied_predictions"].astype(float).sum() if "tied_predictions" in chosen
            and chosen["tied_predictions"].notna().all() else math.nan,
            "warn_edge": bool(chosen["warn_edge"].any()), "warn_last_step": bool(chosen["warn_last_step"].any()),
            **{c: bool(chosen[c].any()) for c in chosen.columns if c.startswith("flag_")},
            "warnings_recorded": bool(chosen["warnings_recorded"].all()),
            "rule": rule, "predictions": [p for p in chosen["predictions"] if isinstance(p, str)], "n": int(chosen["n"].iloc[0]),
        })
    return pd.DataFrame(rows)


def correctness(paths: list[str]) -> pd.Series:
    """Per test id: share of the given cells that got it right (1/0 for one cell)."""
    frames = [load_predictions(p).set_index("id") for p in paths]
    hits = [(f["pred"] == f["gold"]).astype(float) for f in frames]
    return pd.concat(hits, axis=1).mean(axis=1)
