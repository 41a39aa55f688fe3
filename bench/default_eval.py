"""The default `harness eval` (not a test): its whole wall time on this machine and each regime's share, from the
result files it writes, on an idle machine with both cores (the README's set-up promise is ≤ 5 minutes on two cores
of either CPU kind).

    python bench/default_eval.py                      # writes its section of bench/RESULTS.md
    python bench/default_eval.py -- --limit 100       # extra `harness eval` arguments after --
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from results_file import write_section

MARK = "## Default harness eval"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("extra", nargs="*", help="extra harness eval arguments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        command = ["harness", "eval", "--out", out, *args.extra]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - started
        per_regime: dict[str, list[float]] = defaultdict(list)
        for path in Path(out).rglob("*.json"):
            data = json.loads(path.read_text())
            if "cell" in data:
                regime = data["cell"]["regime"] + (f" ({data['cell']['variant']})" if data["cell"].get("variant") else "")
                per_regime[regime].append(data["wall_time_s"])
    shown = " ".join(["harness", "eval", *args.extra])
    heading = f"{MARK}: `{shown}`"  # one section per command line
    lines = [f"{heading} (`python bench/default_eval.py{' -- ' + ' '.join(args.extra) if args.extra else ''}`)", "",
             f"`{shown}` on {torch.backends.cpu.get_cpu_capability()} ({time.strftime('%Y-%m-%d')}), the model "
             f"already converted, nothing else running: **{wall / 60:.1f} min** wall ({wall:.0f} s), of which cells "
             f"{sum(sum(v) for v in per_regime.values()):.0f} s:", "",
             "| regime | cells | seconds (each) |", "|---|---|---|"]
    lines += [f"| {regime} | {len(times)} | {' + '.join(f'{t:.0f}' for t in times)} |"
              for regime, times in per_regime.items()]
    write_section(heading, lines + [""])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
