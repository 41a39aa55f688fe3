"""task × template × regime × k × seed -> cells -> result files on disk (resumable), on an executor: here, one
cell after another, or as Ray tasks (harness/ray_executor.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from harness.errors import HarnessError
from harness.ray_executor import run_on_ray
from harness.results import cell_lock, check_writable, write_cell, write_result
from harness.session import EvalConfig, Outcome, Session, majority_accuracy
from harness.types import Cell, CellResult


@dataclass
class RunReport:
    """What a run did: every cell's result (computed or found on disk) and the majority baselines."""

    results: list[CellResult] = field(default_factory=list)
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0  # being computed by another process on the same run folder
    planned: int = 0  # --dry-run: would be computed
    majority: dict[str, float] = field(default_factory=dict)
    sequence_table: str = ""  # --sequence: the accuracy matrices and their summaries (Markdown)


def run_eval(config: EvalConfig, on_cell: Callable[[Cell, CellResult, str], None] | None = None,
             progress: bool = False, dry_run: bool = False) -> RunReport:
    """Check every input, then compute the cells not already on disk on the configured executor, writing each as it
    finishes. dry_run: only plan, and report each pending cell as "planned" (nothing is loaded or written)."""
    if config.executor not in EXECUTORS:
        raise HarnessError(f"--executor {config.executor}: unknown (known: {', '.join(EXECUTORS)})")
    if config.sequence:  # the tasks trained one after another: the sequence's own runs, not cells
        config = replace(config, tasks=tuple(config.sequence))
    session = Session(config)
    report = RunReport(majority={d.task.name: majority_accuracy(d.test) for d in session.data.values()})
    if not dry_run:
        check_writable(config.out)
    if config.sequence:
        return _run_sequences(session, report, progress, dry_run)
    pending = []
    for d, cell in session.cells:
        existing = session.finished(d, cell)
        if existing is not None:
            _report(report, on_cell, cell, existing, "skipped")
        else:
            pending.append(cell)
    if dry_run:
        for cell in pending:
            _report(report, on_cell, cell, CellResult(cell, status="planned"), "planned")
        return report
    EXECUTORS[config.executor](session, pending, lambda cell, outcome: _write(session, report, on_cell, cell, outcome),
                               lambda cell, result, how: _report(report, on_cell, cell, result, how), progress)
    return report


def _run_sequences(session: Session, report: RunReport, progress: bool, dry_run: bool) -> RunReport:
    from harness.continual import planned_sequences, run_sequences, sequence_table

    if dry_run:
        waiting = [not path.is_file() or session.config.overwrite for *_, path in planned_sequences(session)]
        report.planned, report.skipped = sum(waiting), len(waiting) - sum(waiting)
        return report

    def count(run: Any, how: str) -> None:
        setattr(report, how, getattr(report, how) + 1)

    report.sequence_table = sequence_table(run_sequences(session, progress, count))
    return report


def run_local(session: Session, cells: list[Cell], write: Callable[[Cell, Outcome], None],
              report: Callable[[Cell, CellResult, str], None], progress: bool) -> None:
    """One cell after another in this process, each under a lock (another process may share the run folder)."""
    for cell in cells:
        d = session.data[cell.task]
        with cell_lock(session.paths(cell)[0]) as holder:
            if holder is not None:
                report(cell, CellResult(cell, status="busy", reason=f"pid {holder}"), "busy")
                continue
            existing = session.finished(d, cell)
            if existing is not None:  # another process finished it between the first look and the lock
                report(cell, existing, "skipped")
                continue
            write(cell, session.compute(cell, progress))


def _run_ray(session: Session, cells: list[Cell], write: Callable[[Cell, Outcome], None],
             report: Callable[[Cell, CellResult, str], None], progress: bool) -> None:
    run_on_ray(session.config, cells, write, progress)


# where cells run: --executor
EXECUTORS: dict[str, Callable[..., None]] = {"local": run_local, "ray": _run_ray}


def _write(session: Session, report: RunReport, on_cell: Callable | None, cell: Cell, outcome: Outcome) -> None:
    """Write one computed cell atomically (a failed one: its result alone) and report it."""
    json_path, jsonl_path = session.paths(cell)
    if not outcome.result.ok:
        write_result(json_path, outcome.result)
        _report(report, on_cell, cell, outcome.result, "failed")
        return
    write_cell(json_path, jsonl_path, outcome.result, outcome.predictions, outcome.shifted)
    _report(report, on_cell, cell, outcome.result, "computed")


def _report(report: RunReport, on_cell: Callable | None, cell: Cell, result: CellResult, how: str) -> None:
    report.results.append(result)
    setattr(report, how, getattr(report, how) + 1)
    if on_cell:
        on_cell(cell, result, how)


