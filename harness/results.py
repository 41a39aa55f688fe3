"""One result JSON and one per-example JSONL per cell, written atomically; the run's summary table."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness import __version__
from harness.errors import HarnessError
from harness.types import REGIMES, Prediction


@dataclass(frozen=True, slots=True)
class Cell:
    """(task, template, regime, k, seed): the unit that is computed, stored and skipped on rerun."""

    task: str
    template: str
    regime: str
    k: int  # examples per class; 0 for zero-shot; -1 for the whole train split (--k full)
    seed: int | None  # None for zero-shot, which draws nothing
    variant: str = ""  # a regime's option that changes results, e.g. "top2" for head with 2 blocks unfrozen

    @property
    def stem(self) -> str:
        k = "full" if self.k < 0 else str(self.k)
        regime = f"{self.regime}-{self.variant}" if self.variant else self.regime
        return f"{regime}_k{k}" + ("" if self.seed is None else f"_seed{self.seed}")

    def paths(self, out: Path, model_slug: str) -> tuple[Path, Path]:
        """(result JSON, per-example JSONL) of this cell under a run folder."""
        folder = out / model_slug / self.task / self.template
        return folder / f"{self.stem}.json", folder / f"{self.stem}.jsonl"


def model_slug(model: str) -> str:
    """A folder name for a model name or path."""
    return Path(model).name if Path(model).is_dir() else model.replace("/", "__")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what determines a cell's numbers."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the harness checkout, if it is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def harness_provenance() -> dict[str, Any]:
    """Version and commit of the code that produced a result."""
    return {"version": __version__, "git_commit": git_commit()}


def read_result(path: Path) -> dict[str, Any]:
    """One result JSON; a corrupt file is a one-line error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable result file ({exc})") from exc


def write_cell(json_path: Path, jsonl_path: Path, result: dict[str, Any], predictions: Sequence[Prediction]) -> None:
    """Per-example rows first, then the result JSON, each replaced atomically: a JSON means a finished cell."""
    rows = (json.dumps(prediction_row(p)) + "\n" for p in predictions)
    write_atomic(jsonl_path, "".join(rows))
    write_atomic(json_path, json.dumps(result, indent=2, sort_keys=False) + "\n")


def prediction_row(p: Prediction) -> dict[str, Any]:
    """One JSONL line: ids, choice log-likelihoods, probabilities, prediction, gold."""
    row: dict[str, Any] = {"id": p.id, "gold": p.gold, "pred": p.pred, "probs": list(p.probs)}
    if p.scores is not None:
        row.update(loglik=list(p.scores), loglik_per_char=list(p.scores_norm or ()), pred_norm=p.pred_norm,
                   n_demos=p.n_demos, truncated_tokens=p.truncated_tokens)
    return row


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary_table(results: Iterable[dict[str, Any]], metrics: Sequence[str] = ("accuracy", "macro_f1")) -> str:
    """Markdown: task x regime, mean ± sample std over seeds and templates, with counts."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        if result.get("status", "ok") == "ok":
            cell = result["cell"]
            label = f"{cell['regime']} ({cell['variant']})" if cell.get("variant") else cell["regime"]
            groups.setdefault((cell["task"], label), []).append(result)
    order = {r: i for i, r in enumerate(REGIMES)}
    header = ["task", "regime", "k", *metrics, "cells", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (task, regime), cells in sorted(groups.items(),
                                        key=lambda kv: (kv[0][0], order.get(kv[0][1].split(" ")[0], 99), kv[0][1])):
        ks = sorted({c["cell"]["k"] for c in cells})
        values = [_mean_std([c["metrics"].get(m) for c in cells]) for m in metrics]
        n = sorted({c["n"] for c in cells})
        row = [task, regime, ",".join("full" if k < 0 else str(k) for k in ks), *values, str(len(cells)),
               ",".join(map(str, n))]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("mean ± sample standard deviation over the cells (seeds × templates); n = test examples per cell.")
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    mean = statistics.fmean(present)
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"
