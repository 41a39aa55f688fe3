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
from harness.catalog import check_name
from harness.errors import HarnessError
from harness.locks import exclusive
from harness.result_schema import check_result
from harness.types import ALL_K, CellResult, Prediction


def model_slug(model: str) -> str:
    """A folder name for a model name or path (a hub id's '/' becomes '__'); one that is not a plain name (as
    '..') is one line."""
    return check_name("model folder name", Path(model).resolve().name if Path(model).is_dir()
                      else model.replace("/", "__"))


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


def parse_result(path: Path) -> CellResult:
    """One result JSON checked against the schema (result_schema.py); ValueError (or OSError) says what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply: not a result file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt JSON ({type(exc).__name__})") from None
    check_result(raw)
    return CellResult.from_json(raw)


def read_result(path: Path) -> CellResult:
    """One result JSON; a corrupt or malformed file is a one-line error naming it."""
    try:
        return parse_result(path)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: unreadable result file ({exc})") from exc


def write_cell(json_path: Path, jsonl_path: Path, result: CellResult, predictions: Sequence[Prediction],
               shifted: Sequence[Prediction] = ()) -> None:
    """Per-example rows first, then the result JSON, each replaced atomically: a JSON means a finished cell.
    Predictions on other tasks (--eval-tasks; ids "<task>::<id>", gold in this task's labels) go beside them, in
    <stem>.shift.jsonl."""
    rows = (json.dumps(prediction_row(p)) + "\n" for p in predictions)
    write_atomic(jsonl_path, "".join(rows))
    if shifted:
        write_atomic(shift_path(jsonl_path), "".join(json.dumps(prediction_row(p)) + "\n" for p in shifted))
    write_result(json_path, result)


def shift_path(jsonl_path: Path) -> Path:
    """Where a cell keeps its predictions on other tasks' test examples."""
    return jsonl_path.with_name(jsonl_path.stem + ".shift.jsonl")


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
    """Write through a temporary file in the same folder and rename it into place; an OS error (a file where a
    folder should be, no permission, a full disk) is one line naming the path."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's file is private (0600); a written file is as open() makes it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise HarnessError(f"cannot write {path}: {exc.strerror or exc} (files written before are kept)") from exc
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(folder: Path) -> None:
    """Fail before any compute when results could not be written into `folder`."""
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"--out {folder}: is a file, not a folder")
    probe = folder / ".harness-write-check"
    write_atomic(probe, "")
    probe.unlink(missing_ok=True)


def cell_lock(json_path: Path) -> Any:
    """Hold `.<cell>.lock` while a cell is computed (a context yielding None when held here, else the pid holding
    it): two `harness eval` on one run folder never compute the same cell twice or interleave its files."""
    return exclusive(json_path.with_name(f".{json_path.stem}.lock"), wait=False)


def read_run_folder(folder: Path) -> list[CellResult]:
    """Every readable result file under a run folder (unreadable ones are left to `harness leaderboard`)."""
    results = []
    for path in sorted(folder.rglob("*.json")):
        try:
            results.append(read_result(path))
        except HarnessError:
            continue
    return results


def summary_table(results: Iterable[CellResult], metrics: Sequence[str] | None = None) -> str:
    """Markdown: one row per task x regime x k, mean ± sample std over seeds and templates, with counts; the
    columns are every metric the cells' tasks list (metrics.py), accuracy first."""
    from harness.metrics import shown_metrics
    from harness.regimes import order_of

    results = list(results)
    if metrics is None:
        metrics = shown_metrics([name for r in results if r.ok for name in r.metrics])
    groups: dict[tuple[str, str, int], list[CellResult]] = {}
    for result in results:
        if result.ok:
            groups.setdefault((result.cell.task, result.cell.label, result.cell.k), []).append(result)
    header = ["task", "regime", "k", *metrics, "cells", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    def order(item: tuple[tuple[str, str, int], list[CellResult]]) -> tuple:
        (task, label, k), cells = item
        return task, order_of(cells[0].cell.regime), label, k == ALL_K, k  # k = all after the numbers

    for (task, label, k), cells in sorted(groups.items(), key=order):
        values = [_mean_std([c.metrics.get(m) for c in cells]) for m in metrics]
        n = sorted({c.n for c in cells})
        row = [task, label, "all" if k == ALL_K else str(k), *values, str(len(cells)), ",".join(map(str, n))]
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
