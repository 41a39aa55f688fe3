"""Equal tuning effort (Dodge et al. 2019, "Show Your Work"): how many configurations each regime compared on dev
(learning rates x checkpoints, C values, numbers of demos), and its expected best dev accuracy when only n of them,
drawn at random, had been tried — so a reader sees whether a regime wins because it searched more."""

from __future__ import annotations

import json
import math

import pandas as pd

from harness.leaderboard.seeds import regime_order
from harness.leaderboard.stats import expected_max
from harness.leaderboard.tables import Table

DRAWS = (1, 2, 4, 8, 16, 32)


def effort_rows(cells: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per task and regime at k: the configurations its cells compared (median) and the expected best dev accuracy
    at each n of DRAWS (mean over the cells, each from its own configurations)."""
    at_k = cells[((cells["k"] == k) | ~cells["seeded"]) & cells["dev_configurations"].notna()]
    rows = []
    for (task, regime), group in at_k.groupby(["task", "regime"]):
        configurations = [json.loads(c) for c in group["dev_configurations"]]
        configurations = [c for c in configurations if c]
        if not configurations:
            continue
        row = {"task": task, "regime": regime, "cells": len(configurations),
               "configurations": float(pd.Series([len(c) for c in configurations]).median())}
        for n in DRAWS:
            row[n] = sum(expected_max(c, n) for c in configurations) / len(configurations)
        rows.append(row)
    return pd.DataFrame(rows)


def effort_table(cells: pd.DataFrame, k: int) -> Table:
    rows = effort_rows(cells, k)
    body = []
    if not rows.empty:
        for _, row in sorted(rows.iterrows(), key=lambda kv: (kv[1]["task"], regime_order(kv[1]["regime"]))):
            body.append([(row["task"], False), (row["regime"], False), (f"{row['configurations']:g}", False),
                         *((f"{100 * row[n]:.1f}" if n <= row["configurations"] and not math.isnan(row[n]) else "—",
                            False) for n in DRAWS)])
    notes = ["Configurations: what dev compared per cell (median over its seeds and templates): learning rates × "
             "dev checkpoints for trained regimes (cells before harness 0.5 recorded the chosen rate's checkpoints "
             "only), the C grid for the probe and tf-idf, the numbers of demos for few-shot. E[best dev] at n: the "
             "expected best dev accuracy (%) had only n configurations, drawn at random with replacement, been "
             "tried (Dodge et al. 2019), averaged over the cells (— past the configurations searched); a regime that "
             "leads only at large n wins by searching more."]
    return Table(f"Tuning effort (k = {k})", ["task", "regime", "configurations",
                                              *(f"E[best dev] n={n}" for n in DRAWS)], body, notes, key="effort")
