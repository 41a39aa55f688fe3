"""One result JSON and one per-example JSONL per cell, written atomically; the run's summary table."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness import __version__
from harness.errors import HarnessError
from harness.types import ALL_K, CellResult, Prediction


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


def read_result(path: Path) -> CellResult:
    """One result JSON; a corrupt or malformed file is a one-line error naming it."""
    try:
        return CellResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise HarnessError(f"{path}: unreadable result file ({exc})") from exc


def write_cell(json_path: Path, jsonl_path: Path, result: CellResult, predictions: Sequence[Prediction]) -> None:
    """Per-example rows first, then the result JSON, each replaced atomically: a JSON means a finished cell."""
    rows = (json.dumps(prediction_row(p)) + "\n" for p in predictions)
    write_atomic(jsonl_path, "".join(rows))
    write_result(json_path, result)


def write_result(json_path: Path, result: CellResult) -> None:
    """The result JSON alone (a failed cell has no per-example rows)."""
    write_atomic(json_path, json.dumps(result.to_json(), indent=2) + "\n")


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


def summary_table(results: Iterable[CellResult], metrics: Sequence[str] = ("accuracy", "macro_f1")) -> str:
    """Markdown: task x regime, mean ± sample std over seeds and templates, with counts."""
    from harness.regimes import order_of

    groups: dict[tuple[str, str], list[CellResult]] = {}
    for result in results:
        if result.ok:
            groups.setdefault((result.cell.task, result.cell.label), []).append(result)
    header = ["task", "regime", "k", *metrics, "cells", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (task, label), cells in sorted(groups.items(),
                                       key=lambda kv: (kv[0][0], order_of(kv[1][0].cell.regime), kv[0][1])):
        ks = sorted({c.cell.k for c in cells})
        values = [_mean_std([c.metrics.get(m) for c in cells]) for m in metrics]
        n = sorted({c.n for c in cells})
        row = [task, label, ",".join("all" if k == ALL_K else str(k) for k in ks), *values, str(len(cells)),
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
