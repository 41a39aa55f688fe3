"""The convergence pilot's table, from its cells and the published 24-step cells (the same tasks, seeds and test
items): per regime, where the best checkpoint fell, whether runs could stop, dev and test accuracy at 24 steps
against the pilot's budget, and the smallest budget whose best dev score is within 1 point of the pilot's.

    python leaderboard/studies/convergence/report.py PILOT_RUNS PUBLISHED_RUNS [CHECK_RUNS] > .../README.md

CHECK_RUNS: cells rerun with the chosen budget as their own (its shorter schedule), to check the estimate.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BUDGETS = (24, 32, 48, 64, 96, 128, 192)  # multiples of the pilot's dev cadence (8 steps)
PLANNED = 2 * 3 * 4  # sst2, subj x seeds 13, 21, 42 x full, prompt-ft, lora, LP-FT


def cells(folder: Path) -> dict[tuple, dict]:
    out = {}
    for path in folder.rglob("*_k16_seed*.json"):
        data = json.loads(path.read_text())
        if data.get("status") == "ok":
            cell = data["cell"]
            out[(cell["task"], cell["regime"], cell.get("variant", ""), cell["seed"])] = data
    return out


def best_within(histories: list[list[dict]], budget: int) -> float | None:
    """The best dev accuracy of any learning rate's run at any check up to `budget` steps."""
    scores = [h["dev_accuracy"] for history in histories for h in history if h["step"] <= budget]
    return max(scores) if scores else None


def budget_within_one_point(selection: dict) -> int:
    """The smallest budget whose best dev accuracy (every learning rate) is within 1 point of the pilot's."""
    histories = [run["history"] for run in selection.get("runs") or []] or [selection["history"]]
    final = best_within(histories, max(BUDGETS))
    return next((b for b in BUDGETS if (best_within(histories, b) or -1) >= final - 0.01), max(BUDGETS))


def main() -> None:
    pilot, published = cells(Path(sys.argv[1])), cells(Path(sys.argv[2]))
    print("# Convergence pilot (CPU)\n")
    if len(pilot) < PLANNED:
        print(f"**{len(pilot)} of the {PLANNED} planned cells are computed**; `reproduce.sh` computes the rest (it "
              "skips finished cells). No finding is stated until the table holds every cell: the rows below are what "
              "has run.\n")
    else:
        print(f"All {PLANNED} planned cells are computed (sst2 and subj, k = 16, seeds 13, 21, 42; full, LP-FT, "
              "lora, prompt-ft; 3 learning rates each, up to 192 steps, dev every 8 steps, patience 4; 2-core CPU, "
              "one thread per process).\n")
    print("Written by `report.py` from the cells in `runs-cpu/` (made by `reproduce.sh`) and the published 24-step "
          "cells (`leaderboard/runs-0.4-cpu`, lr 4e-5 / lora 1e-3, same tasks, seeds and 200 test items). "
          "Best step: of the chosen learning rate's run. Budget within 1 point: the smallest of "
          f"{', '.join(map(str, BUDGETS))} steps whose best dev accuracy (any learning rate of the grid, any check up "
          "to that step) is within 1 point of the best at the pilot's budget — dev, not test, since only the chosen "
          "checkpoint scores the test set.\n")
    print("| task | regime | cells | best step per seed | best before the last step | stopped early | "
          "dev @24 → pilot | test @24 → pilot | budget within 1 point (dev) |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list] = {}
    for (task, regime, variant, seed), data in sorted(pilot.items()):
        groups.setdefault((task, regime, variant), []).append((seed, data))
    for (task, regime, variant), members in groups.items():
        label = f"{regime} ({variant})" if variant else regime
        selections = [d["selection"] for _, d in members]
        steps = [s["best_step"] for s in selections]
        before_last = sum(s["best_step"] < s["steps"] for s in selections)
        stopped = sum(s.get("stopped") == "plateau" for s in selections)
        old = [published.get((task, regime, variant, seed)) for seed, _ in members]
        pairs = [(o, d) for o, (_, d) in zip(old, members) if o is not None]

        def mean(values: list[float]) -> str:
            return f"{100 * statistics.fmean(values):.1f}" if values else "—"

        dev = f"{mean([o['selection']['dev_accuracy'] for o, _ in pairs])} → {mean([d['selection']['dev_accuracy'] for _, d in pairs])}"
        test = f"{mean([o['metrics']['accuracy'] for o, _ in pairs])} → {mean([d['metrics']['accuracy'] for _, d in pairs])}"
        within = [budget_within_one_point(d["selection"]) for _, d in members]
        print(f"| {task} | {label} | {len(members)} | {', '.join(map(str, steps))} | {before_last}/{len(members)} | "
              f"{stopped}/{len(members)} | {dev} | {test} | {', '.join(map(str, within))} |")
    print("\nCells whose 24-step counterpart is not published are left out of the arrows (LP-FT at 24 steps was not "
          "republished on the CPU).\n")
    summary(pilot)
    if len(sys.argv) > 3:
        check(pilot, cells(Path(sys.argv[3])))


def summary(pilot: dict[tuple, dict]) -> None:
    """Over every cell: where the best step fell, and the budget that the published cells take from it."""
    selections = [d["selection"] for d in pilot.values()]
    steps = sorted(s["best_step"] for s in selections)
    before_last = sum(s["best_step"] < s["steps"] for s in selections)
    within = [budget_within_one_point(s) for s in selections]
    shares = {b: sum(w <= b for w in within) / len(within) for b in BUDGETS}
    chosen = next(b for b in BUDGETS if shares[b] >= 0.9)
    status = "" if len(pilot) == PLANNED else f" (provisional: {len(pilot)} of {PLANNED} cells)"
    print(f"## Over all cells{status}\n")
    print(f"- Best step before the last: {before_last} of {len(selections)} cells "
          f"({100 * before_last / len(selections):.0f} %; target ≥ 90 %). Best steps: min {steps[0]}, median "
          f"{statistics.median(steps):g}, max {steps[-1]}.")
    print("- Cells whose best dev accuracy is within 1 point of the pilot's by a budget of "
          + ", ".join(f"{b} steps: {100 * shares[b]:.0f} %" for b in BUDGETS) + ".")
    print(f"- **The smallest budget that holds ≥ 90 % of the cells within 1 dev point: {chosen} steps** (with the "
          "pilot's 3-value learning-rate grid, dev every 8 steps and early stopping). Only the chosen checkpoint "
          "scores the test set, so the budget is read on dev. It is read off the 192-step runs' dev histories, whose "
          "learning rate warms up over 10 % of 192 steps and decays over 192: a run given that budget has its own, "
          "shorter schedule, so the budget is an estimate (and the arrows above compare 24-step runs with the "
          "pilot's checkpoints under the longer schedule, not the same step of the same run).")



def check(pilot: dict[tuple, dict], rerun: dict[tuple, dict]) -> None:
    """Cells rerun with the chosen budget as their own: their dev and test accuracy against the pilot's."""
    if not rerun:
        return
    budget = {d["settings"]["max_steps"] for d in rerun.values()}
    print(f"\n## The budget checked: cells rerun with {', '.join(map(str, sorted(budget)))} steps as their own\n")
    print("Each cell trained again with the budget as its own schedule (warmup and decay over it), the rest as the "
          "pilot. Within 1 point: the rerun's best dev accuracy is at most 1 point below the pilot's.\n")
    print("| task | regime | seed | dev: pilot → budget | test: pilot → budget | best step | within 1 point (dev) |")
    print("|---|---|---|---|---|---|---|")
    within, dev_changes, test_changes = 0, [], []
    for key, data in sorted(rerun.items()):
        if key not in pilot:
            continue
        task, regime, variant, seed = key
        old, new = pilot[key], data
        ok = new["selection"]["dev_accuracy"] >= old["selection"]["dev_accuracy"] - 0.01
        within += ok
        dev_changes.append(new["selection"]["dev_accuracy"] - old["selection"]["dev_accuracy"])
        test_changes.append(new["metrics"]["accuracy"] - old["metrics"]["accuracy"])
        print(f"| {task} | {regime + (f' ({variant})' if variant else '')} | {seed} | "
              f"{100 * old['selection']['dev_accuracy']:.1f} → {100 * new['selection']['dev_accuracy']:.1f} | "
              f"{100 * old['metrics']['accuracy']:.1f} → {100 * new['metrics']['accuracy']:.1f} | "
              f"{new['selection']['best_step']} of {new['selection']['steps']} | {'yes' if ok else 'no'} |")
    print(f"\n{within} of {len(test_changes)} rerun cells within 1 dev point of the pilot. Mean change, budget − "
          f"pilot: dev {100 * statistics.fmean(dev_changes):+.1f} points, test {100 * statistics.fmean(test_changes):+.1f} "
          f"points (per cell {100 * min(test_changes):+.1f} … {100 * max(test_changes):+.1f}). On a dev set of 32 "
          "examples one example is 3.1 points, and the pilot's best dev score is a maximum over up to 4 times as many "
          "checkpoints (192 steps against 48), so it is biased upward against any shorter run: the per-cell dev "
          "criterion is strict; the test column is the unbiased comparison.")


if __name__ == "__main__":
    main()
