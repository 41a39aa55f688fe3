"""How far dev preferred the mitigation strength it chose (study notes of issue "From prompt to weights").

For every mitigated cell (`*-ewc`, `*-l2sp`) under RUN_DIR: which end of the strength grid dev chose (low, high or
inside), and by how many dev items the chosen strength's best checkpoint beat the best of the others (0: a tie on dev
accuracy, broken by dev loss). A grid too narrow would show its edges chosen at one end, by growing margins; edges at
both ends by a dev item or none are what a dev set of 2k items cannot tell apart.

    python leaderboard/studies/spectrum/strength_margins.py [RUN_DIR] > leaderboard/studies/spectrum/strength_margins.md
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path


def margins(run_dir: Path) -> dict[tuple[str, str], collections.Counter]:
    """(task, regime) -> counts of (where the chosen strength lies, its lead over the others in dev items)."""
    counts: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for path in sorted(run_dir.glob("*/*/*/*.json")):
        regime = path.stem.split("_k")[0]
        if not regime.endswith(("-ewc", "-l2sp")) or path.parts[-4] == "sequences":  # not a continual run
            continue
        cell = json.loads(path.read_text())
        best = {run["mitigation_strength"]: max(h["dev_accuracy"] for h in run["history"])
                for run in cell["selection"]["runs"]}
        chosen = cell["selection"]["chosen"]["mitigation_strength"]
        lead = round((best[chosen] - max(a for s, a in best.items() if s != chosen)) * len(cell["dev_ids"]))
        where = "low" if chosen == min(best) else "high" if chosen == max(best) else "inside"
        counts[(path.parts[-3], regime)][(where, lead)] += 1
    return counts


def main() -> None:
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "leaderboard/studies/spectrum/runs-cpu")
    rows = ["| task | regime | cells | low edge | high edge | inside | chosen by ≥ 2 dev items |",
            "|---|---|---|---|---|---|---|"]
    for (task, regime), counts in sorted(margins(run_dir).items()):
        by_where = collections.Counter()
        for (where, _), n in counts.items():
            by_where[where] += n
        clear = sum(n for (_, lead), n in counts.items() if lead >= 2)
        rows.append(f"| {task} | {regime} | {sum(counts.values())} | {by_where['low']} | {by_where['high']} | "
                    f"{by_where['inside']} | {clear} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
