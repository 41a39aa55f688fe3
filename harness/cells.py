"""Compute one cell: draw its data, run its regime, join the test labels, and build its result record."""

from __future__ import annotations

import resource
import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Sequence

from harness.backbone import block_parameters
from harness.errors import HarnessError
from harness.metrics import compute_metrics
from harness.regimes.protocol import Regime
from harness.results import harness_provenance
from harness.sampling import TEST_SUBSET_SEED, KShotDraw, draw_kshot
from harness.shift import ShiftSet, split_predictions
from harness.types import ALL_K, Cell, CellResult, Example, FitData, Prediction, TaskSpec, Template, TestInput

def draw_for(cell: Cell, regime: Regime, settings: Any, templates: int, train: Sequence[Example],
             validation: Sequence[Example], task: TaskSpec) -> KShotDraw:
    """The cell's training set and dev set: k per class with the seed, or the whole train split (k = all).

    A dev set is drawn when the regime asks for one, given how many templates the run compares. A regime that
    learns from no examples (zero-shot) gets the dev set alone: the same one the other regimes select on at
    that k and seed.
    """
    with_dev = regime.needs_dev(settings, templates)
    if cell.seed is None:  # one cell for every seed: nothing drawn
        return KShotDraw((), ())
    if cell.k == ALL_K:
        draw = KShotDraw(tuple(train), tuple(validation) if with_dev else ())
    else:
        draw = draw_kshot(train, cell.k, cell.seed, task.label_names, with_dev=with_dev)
    return draw if regime.draws_examples else KShotDraw((), draw.dev)


def fit_data(draw: KShotDraw, test: Sequence[Example], task: TaskSpec, cell: Cell) -> FitData:
    """What the regime may see: the cell's draw (with its k and seed) and the test inputs without their labels."""
    inputs = tuple(TestInput(id=e.id, fields=e.fields) for e in test)
    return FitData(train=draw.train, dev=draw.dev, test=inputs, label_names=task.label_names, task=task.name,
                   k=cell.k, seed=cell.seed)


def run_cell(regime: Regime, settings: Any, lm: Any, shared: Any, task: TaskSpec, template: Template, cell: Cell,
             draw: KShotDraw, test: Sequence[Example], progress: bool, shifts: Sequence[ShiftSet] = (),
             forgetting: Any = None) -> tuple[CellResult, list[Prediction], list[Prediction]]:
    """The regime's predictions joined with the test labels, its metrics, and its cost (provenance comes later);
    with shifts, the same trained cell also predicts those target examples: (result, predictions, target
    predictions), the targets' metrics in the result's details["shift"]; with forgetting probes (--forgetting),
    what adapting the backbone cost the LM, measured on the model the regime deployed."""
    import torch

    from harness import cpu_linear

    cpu_linear.forget_choice()
    if regime.draws_examples and cell.seed is None:
        raise HarnessError(f"cell {cell.stem}: {regime.name} draws examples, but the cell has no seed")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    scored = [*test, *(e for s in shifts for e in s.examples)]  # the task's own test examples, then the targets'
    started = time.perf_counter()
    try:
        run = regime.run(lm, shared, template, fit_data(draw, scored, task, cell), settings, progress)
        measured = _forgetting(forgetting, regime, run, lm, task.name, progress)
    except (RuntimeError, MemoryError) as exc:
        if isinstance(exc, MemoryError) or "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            raise HarnessError(f"cell {cell.stem} ran out of memory: try a smaller --batch-size (full: or "
                               f"--grad-accum with a smaller batch); finished cells are kept") from exc
        raise
    wall = time.perf_counter() - started
    gold = {e.id: e.label for e in scored}
    predictions, by_target = split_predictions([replace(p, gold=gold[p.id]) for p in run.predictions])
    cost = replace(
        run.cost,
        trainable_parameters_percent=100 * run.cost.trainable_parameters / (run.cost.total_parameters or 1),
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # process peak so far
        peak_cuda_bytes=torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        block_parameters=block_parameters(lm.model),
    )
    # what share of the test predictions each class takes: a prompt that answers one class for all shows here
    shares = {name: sum(p.pred == c for p in predictions) / len(predictions) for c, name in enumerate(task.label_names)}
    kernels = cpu_linear.choice()  # what the cell's no-gradient forwards ran through, if any ran
    details = {**run.details, **measured, **({"cpu_linear": kernels} if kernels else {}),
               "predicted_distribution": shares,
               "tied_predictions": sum(p.tied for p in predictions)}  # broken by id (Prediction.pred), counted
    if shifts:  # the cost above includes predicting these inputs too
        details["shift"] = {s.target: {**s.identity(), "metrics": compute_metrics(task.metrics, by_target[s.target])}
                            for s in shifts}
    result = CellResult(cell=cell, metrics=compute_metrics(task.metrics, predictions), n=len(predictions),
                        wall_time_s=round(wall, 3), cost=cost, details=details)
    return result, predictions, [p for s in shifts for p in by_target[s.target]]


def _forgetting(probes: Any, regime: Regime, run: Any, lm: Any, task: str, progress: bool) -> dict[str, Any]:
    """{"forgetting": ...} for a regime that adapts the backbone when the run measures it, else {}: the model the
    regime deployed (its RegimeRun.deployed; None: the base model, unchanged) against the untouched one."""
    if probes is None or not regime.adapts_backbone:
        return {}
    probes.score_untouched(lm, progress)
    with (run.deployed(lm.model) if run.deployed is not None else nullcontext(lm.model)) as adapted:
        return {"forgetting": probes.measure(adapted, lm, task, progress)}


def failed_result(cell: Cell, reason: str, step: int) -> CellResult:
    """The record of a cell whose training broke down."""
    return CellResult(cell=cell, status="failed", reason=reason, failed_step=step)


def with_provenance(result: CellResult, lm: Any, task: TaskSpec, template: Template,
                    resolved: dict[str, Any]) -> CellResult:
    """Add what identifies the cell and the code, model and data behind it."""
    result.provenance = {
        "task_version": task.version,
        "template_sha256": template.sha256,
        "template_text": template.source,
        "template_file": template.text,  # header included: verbalizers, delimiter, separator as scored
        "verbalizers": list(template.verbalizers),
        "model": lm.identity if lm is not None else None,
        "device": lm.device if lm is not None else None,
        "seeds": {"sampling": result.cell.seed, "test_subset": TEST_SUBSET_SEED},
        "harness": harness_provenance(),
        "config": resolved["determining"],
        "invocation": resolved["invocation"],
        "config_hash": resolved["hash"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result.details = {"settings": resolved["settings"], **result.details}
    return result
