"""Old → new: each task × regime's main-table mean (the dev-chosen template per seed) in two run folders, with
what changed in how it was measured (seeds, test items, templates), as a Markdown table.
    python leaderboard/changed_claims.py OLD_RUNS NEW_RUNS [--k 16] [--model smollm2-135m] > changes.md"""

import argparse

import pandas as pd

from harness.leaderboard.collect import collect
from harness.leaderboard.seeds import per_seed, regime_order


def main_means(run_dir: str, k: int, model: str) -> pd.DataFrame:
    cells = collect([run_dir]).cells
    cells = cells[cells["model"].str.startswith(model)]
    seeds = per_seed(cells)
    at_k = seeds[(seeds["k"] == k) | ~seeds["seeded"]]
    templates = cells.groupby(["task", "regime"])["template"].nunique()
    return at_k.groupby(["task", "regime"]).agg(accuracy=("accuracy", "mean"), seeds=("seed", "nunique"),
                                                 n=("n", "max")).join(templates.rename("templates"))


def _cell(accuracy: float, seeds: int, n: int, templates: int) -> str:
    runs = f"{seeds:.0f} seeds" if seeds else "1 run"  # an unseeded zero-shot
    return f"{100 * accuracy:.1f} ({runs} × {n:.0f} items, {templates:.0f} template{'s' if templates > 1 else ''})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    old, new = main_means(args.old, args.k, args.model), main_means(args.new, args.k, args.model)
    both = old.join(new, lsuffix="_old", rsuffix="_new", how="inner")
    print("| task | regime | old: accuracy (seeds × test items, templates searched) | new | change (points) |")
    print("|---|---|---|---|---|")
    for (task, regime), r in sorted(both.iterrows(), key=lambda kv: (kv[0][0], regime_order(kv[0][1]))):
        print(f"| {task} | {regime} | {_cell(r.accuracy_old, r.seeds_old, r.n_old, r.templates_old)} | "
              f"{_cell(r.accuracy_new, r.seeds_new, r.n_new, r.templates_new)} | "
              f"{100 * (r.accuracy_new - r.accuracy_old):+.1f} |")


if __name__ == "__main__":
    main()
