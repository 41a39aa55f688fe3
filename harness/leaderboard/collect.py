"""Run folders -> one tidy table of cells (pandas), with merge, dedup and the problems found on the way."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.continual import SEQUENCES
from harness.errors import HarnessError
from harness.regimes import REGISTRY, is_prompting
from harness.regimes.checks import flags, grid_edge
from harness.results import parse_result

SEQUENCE_KEYS = ("regime", "k", "seed", "tasks", "matrix", "untouched", "acc", "bwt", "fwt")
KEY = ["model", "task", "template", "regime", "k", "seed"]  # regime = its label, variant included


@dataclass
class Collected:
    """The cells, and every file that was skipped or conflicting, as one-line messages."""

    cells: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    skipped: int = 0  # result files left out: unreadable, failing the schema, a failed cell, an unknown regime
    sequences: list[dict[str, Any]] = field(default_factory=list)  # --sequence runs (<run>/sequences/**.json)


def model_name(identity: dict[str, Any] | None) -> str:
    """A short, stable name for a model identity."""
    if not identity:
        return "unknown"
    name = identity.get("id") or Path(identity.get("path", "local")).name
    digest = identity.get("sha256") or identity.get("revision") or ""
    return f"{name}@{digest[:10]}" if digest else name


def collect(run_dirs: Sequence[str | Path]) -> Collected:
    """Read every result JSON under the run folders; bad files become problems, not failures."""
    problems: list[str] = []
    rows, skipped, sequences = [], 0, []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            problems.append(f"{run_dir}: no such run folder")
            continue
        sequences += _sequences(run_dir / SEQUENCES, problems)
        files = [p for p in sorted(run_dir.rglob("*.json"))
                 if p.name != "summary.json" and SEQUENCES not in p.relative_to(run_dir).parts]
        if not files:
            problems.append(f"{run_dir}: holds no result files")
        for path in files:
            row = _row(path, problems)
            if row is not None:
                rows.append(row)
            else:
                skipped += 1
    if not rows:
        raise HarnessError("no usable result files in " + ", ".join(map(str, run_dirs)) +
                           (f" ({problems[0]})" if problems else ""))
    cells = pd.DataFrame(rows)
    return Collected(_dedup(cells, problems), problems, skipped, sequences)


def _sequences(folder: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The --sequence runs under a run folder (continual.py writes them); a malformed one is a problem line."""
    runs = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            run = json.loads(path.read_text())
            if not all(key in run for key in SEQUENCE_KEYS):
                raise ValueError(f"lacks {', '.join(k for k in SEQUENCE_KEYS if k not in run)}")
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: not a sequence run ({exc}), skipped")
            continue
        runs.append({**run, "model": path.parent.parent.name})
    return runs


def _row(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        result = parse_result(path)
    except OSError as exc:
        problems.append(f"{path}: unreadable result file skipped ({type(exc).__name__})")
        return None
    except ValueError as exc:
        problems.append(f"{path}: {exc}, skipped")
        return None
    if not result.ok:
        problems.append(f"{path}: cell failed ({result.reason or 'no reason'}), left out")
        return None
    cell, cost = result.cell, asdict(result.cost) if result.cost else {}
    if cell.regime not in REGISTRY:
        problems.append(f"{path}: regime '{cell.regime}' is unknown to this harness, left out")
        return None
    predictions = path.with_suffix(".jsonl")
    if not predictions.is_file():  # published runs may keep them gzipped
        predictions = path.with_suffix(".jsonl.gz")
    if not predictions.is_file():
        problems.append(f"{path}: no per-example file beside it; calibration and significance leave it out")
    elif not _predictions_match(predictions, result.n, _classes(result), problems):
        predictions = None
    provenance = result.provenance
    edge, last_step = flags(result.details.get("warnings"))
    return {
        "model": model_name(provenance.get("model")), "task": cell.task, "template": cell.template,
        "regime": cell.label, "base_regime": cell.regime, "k": cell.k, "seed": cell.seed, "n": result.n,
        "seeded": cell.seed is not None,  # drawn at a k with a seed (zero-shot too, when it selects on dev)
        "prompting": is_prompting(cell.regime),
        **{f"metric_{k}": v for k, v in result.metrics.items()},
        "dev_accuracy": (result.details.get("selection") or {}).get("dev_accuracy"),
        # the selection metric's dev value (higher is better); cells before it recorded accuracy alone
        "dev_score": (result.details.get("selection") or {}).get("dev_score",
                                                               (result.details.get("selection") or {}).get("dev_accuracy")),
        "dev_loss": (result.details.get("selection") or {}).get("dev_loss"),
        # what the regime flagged in its own selection: a grid's edge chosen, the best checkpoint at the last step
        "warnings_recorded": "warnings" in result.details,  # trained regimes of harness 0.3 on record them
        "warn_edge": edge or strength_on_edge(result.details), "warn_last_step": last_step,
        **selection_flags(result.details),
        # the cell's scores on other tasks' test splits (--eval-tasks) and its forgetting (--forgetting), as JSON
        "tied_predictions": result.details.get("tied_predictions"),  # None: harness < 0.4 did not count them
        # every configuration dev compared, as its dev accuracy (equal tuning effort: expected max over n draws)
        "dev_configurations": _json_or_none(dev_configurations(result.details)),
        "shift": _json_or_none(result.details.get("shift")),
        "forgetting": _json_or_none(result.details.get("forgetting")),
        "largest_class_share": _largest_class_share(predictions) if predictions and predictions.is_file() else None,
        "flag_zero_recall": _zero_recall(predictions) if predictions and predictions.is_file() else False,
        **{f"cost_{k}": v for k, v in cost.items()},
        "config_hash": result.config_hash, "created_at": provenance.get("created_at") or "",
        "device": provenance.get("device"), "harness_version": (provenance.get("harness") or {}).get("version"),
        "harness_commit": (provenance.get("harness") or {}).get("git_commit"),
        "command": (provenance.get("invocation") or {}).get("command") or "",
        "model_identity": json.dumps(provenance.get("model"), sort_keys=True),
        # a path, or None: calibration and significance leave the cell out (pandas may turn None into NaN)
        "predictions": str(predictions) if predictions and predictions.is_file() else None, "path": str(path),
    }


def selection_flags(details: dict[str, Any]) -> dict[str, bool]:
    """What a reviewer would flag in a cell's selection, read from what it recorded (cells of any version): the
    best checkpoint at the first dev check of a run that went on; a budget whose cadence and patience leave early
    stopping no room (its earliest stop is the last step); a grid of one value (nothing was searched); a class the
    cell never predicted."""
    selection, settings = _section(details, "selection"), _section(details, "settings")
    history = selection.get("history") if isinstance(selection.get("history"), list) else []
    best, steps = _count(selection.get("best_step")), _count(selection.get("steps"))
    first = bool(history) and isinstance(history[0], dict) and best is not None and \
        best == history[0].get("step") and (steps or 0) > best
    numbers = [_count(settings.get(k)) for k in ("eval_every", "patience", "max_steps")]
    least = _count(settings.get("min_steps") or 0)
    cannot = None not in numbers and least is not None and max(least, numbers[0] * (numbers[1] + 1)) >= numbers[2]
    grids = [settings.get(k) for k in ("learning_rates", "c_grid") if isinstance(settings.get(k), list)]
    searched = "history" in selection or "grid" in selection
    distribution = _section(details, "predicted_distribution")
    return {"flag_first_evaluation": first, "flag_cannot_stop": bool(cannot),
            "flag_not_searched": searched and any(len(g) == 1 for g in grids),
            "flag_class_never_predicted": any(v == 0 for v in distribution.values())}


def strength_on_edge(details: dict[str, Any]) -> bool:
    """A mitigation strength chosen on the edge of its grid, read from what the cell recorded: cells of harness 0.5
    wrote a warning for a learning rate's edge but not for a strength's."""
    grid = _section(details, "settings").get("mitigation_strengths")
    chosen = _section(_section(details, "selection"), "chosen").get("mitigation_strength")
    numbers = isinstance(grid, list) and all(isinstance(v, (int, float)) for v in [*grid, chosen])
    return numbers and bool(grid_edge("mitigation strength", grid, chosen))


def _section(details: dict[str, Any], key: str) -> dict[str, Any]:
    """A recorded section that should be a mapping; {} when it is missing or was written as something else."""
    value = details.get(key)
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    """A recorded whole number (steps, patience), or None when it is missing or not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mappings(value: Any) -> list[dict[str, Any]]:
    """The mappings in a recorded list (a history, a grid); [] when it is missing or not a list."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def dev_configurations(details: dict[str, Any]) -> list[float]:
    """The dev accuracy of every configuration a cell's selection compared: each learning rate's every checkpoint
    (cells before harness 0.5 kept the chosen rate's alone), each C of a probe, each number of demos; [] when it
    recorded none."""
    selection, demos = _section(details, "selection"), _section(details, "demos_selection")
    runs, history, grid = (_mappings(selection.get(key)) for key in ("runs", "history", "grid"))
    if runs:
        found = [h.get("dev_accuracy") for run in runs for h in _mappings(run.get("history"))]
    elif history:
        found = [h.get("dev_accuracy") for h in history]
    elif grid:
        found = [g.get("dev_accuracy") for g in grid]
    elif isinstance(demos.get("dev_accuracy"), list):
        found = demos["dev_accuracy"]
    else:
        found = [selection.get("dev_accuracy")]
    return [float(v) for v in found if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1]


def _json_or_none(value: Any) -> str | None:
    return json.dumps(value, sort_keys=True) if value else None


def _dedup(cells: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    """The same cell twice with one config hash counts once; with two hashes, the newest is kept and reported."""
    cells = cells.assign(seed_key=cells["seed"].fillna(-1)).sort_values("created_at")
    keep = []
    for _, group in cells.groupby([*KEY[:-1], "seed_key"], dropna=False, sort=False):
        if group["config_hash"].nunique() > 1:
            problems.append(
                f"conflicting results for {group.iloc[0]['task']}/{group.iloc[0]['template']}/{group.iloc[0]['regime']} "
                f"k={group.iloc[0]['k']} seed={group.iloc[0]['seed']}: kept {group.iloc[-1]['path']}, "
                f"dropped {', '.join(group.iloc[:-1]['path'])}"
            )
        keep.append(group.iloc[-1])
    frame = pd.DataFrame(keep).drop(columns="seed_key").reset_index(drop=True)
    return frame.astype({"seeded": bool, "prompting": bool})


def _classes(result: Any) -> int | None:
    """How many classes the cell's task has, as its result records them (its verbalizers, else its predictions'
    distribution); None when it records neither."""
    recorded = result.provenance.get("verbalizers") or result.details.get("predicted_distribution")
    return len(recorded) if recorded else None


def _predictions_match(path: Path, n: int, classes: int | None, problems: list[str]) -> bool:
    """The per-example file parses and holds one row per test example of the cell, with the columns read, unique
    ids, and in every row a gold label and prediction within the classes and finite probabilities over all of
    them that sum to 1."""
    try:
        frame = load_predictions(str(path))
    except (OSError, ValueError, EOFError, RecursionError) as exc:
        problems.append(f"{path}: unreadable per-example file ({type(exc).__name__}); calibration and "
                        "significance leave the cell out")
        return False
    missing = sorted({"id", "gold", "pred", "probs"} - set(frame.columns))
    if missing or len(frame) != n:
        what = f"lacks {', '.join(missing)}" if missing else f"holds {len(frame)} rows for n = {n}"
        problems.append(f"{path}: {what}; calibration and significance leave the cell out")
        return False
    bad = _bad_row(frame, classes)
    if bad is not None:
        problems.append(f"{path}: {bad}; calibration and significance leave the cell out")
        return False
    return True


def _bad_row(frame: pd.DataFrame, classes: int | None) -> str | None:
    """The first malformed row of a per-example file, in words; None when every row is well formed."""
    for number, value in enumerate(frame["id"], 1):
        if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
            return f"row {number}: id {value!r} is not a test id"
    if frame["id"].duplicated().any():
        return f"test id {frame['id'][frame['id'].duplicated()].iloc[0]!r} appears twice"
    for number, row in enumerate(frame.itertuples(index=False), 1):
        probs = row.probs
        if not isinstance(probs, list) or not probs or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                                              and math.isfinite(p) and p >= 0 for p in probs):
            return f"row {number}: probs must be a list of finite non-negative numbers"
        width = classes or len(probs)
        if len(probs) != width or abs(sum(probs) - 1) > 1e-3:
            return f"row {number}: probs must hold {width} probabilities summing to 1"
        for column in ("gold", "pred"):
            value = getattr(row, column)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < width:
                return f"row {number}: {column} {value!r} is not a class (0 .. {width - 1})"
    return None


def _largest_class_share(path: Path) -> float:
    """The share of a cell's predictions that go to its most predicted class (1.0: collapsed to one class)."""
    preds = load_predictions(str(path))["pred"]
    return float(preds.value_counts().iloc[0] / len(preds))


def _zero_recall(path: Path) -> bool:
    """Whether some class of the test set has no example predicted right (never predicted, or always wrong)."""
    rows = load_predictions(str(path))
    return bool((rows.assign(right=rows["gold"] == rows["pred"]).groupby("gold")["right"].sum() == 0).any())


@lru_cache(maxsize=4096)
def load_predictions(path: str) -> pd.DataFrame:
    """One cell's per-example rows: id, gold, pred, probs (plain or .gz); read once per process."""
    return pd.read_json(path, lines=True, compression="infer")
