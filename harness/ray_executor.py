"""`harness eval --executor ray`: the cells of a run as Ray tasks on a pool of worker actors.

The driver plans the cells and skips finished ones as the local runner does; each pending cell goes to a worker
actor holding its resource request (`--cpus-per-cell`, `--gpus-per-cell`: a fraction packs several workers onto
one GPU). A worker is given the run's configuration (plain data) once, builds the same `Session` the local
runner builds (regimes, task data, model loaded once, feature cache), computes the cells it is sent and returns
each cell's result and predictions to the driver, which writes them atomically as they arrive. Results travel
back to the driver, not through a shared filesystem: a cluster's nodes need the model and data, not the run
folder. A worker that dies is restarted once and its cell retried; if that fails too, the cell is written as
failed (a rerun computes it) and the other cells go on. Ctrl-C loses only the cells not yet written.

Ray is an optional extra (`pip install -e ".[ray]"`); nothing imports this module unless --executor ray.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from harness.errors import HarnessError
from harness.types import Cell, CellResult

# A test hook (a lost worker): "<cell stem>" makes a worker exit abruptly the first time it starts that cell,
# "<cell stem>:always" every time.
CRASH_ENV = "HARNESS_RAY_CRASH"


def run_on_ray(config: Any, cells: Sequence[Cell], write: Callable[[Cell, Any], None], progress: bool) -> None:
    """Compute `cells` on Ray workers; `write(cell, outcome)` is called in the driver as each one arrives."""
    if not cells:
        return
    try:
        import ray
    except ImportError:
        raise HarnessError("--executor ray needs Ray: pip install 'harness[ray]' (or ray>=2.9)") from None
    from tqdm.auto import tqdm

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=progress,
                     configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise HarnessError(f"--address {config.ray_address}: cannot connect to a Ray cluster ({exc})") from exc
    try:
        gpus = config.gpus_per_cell if config.gpus_per_cell is not None else _default_gpus()
        workers = _worker_count(ray.cluster_resources(), config.cpus_per_cell, gpus, len(cells))
        Worker = ray.remote(num_cpus=config.cpus_per_cell, num_gpus=gpus, max_restarts=1,
                            max_task_retries=1)(CellWorker)
        idle = [Worker.remote(config) for _ in range(workers)]
        queue, running = list(cells), {}
        bar = tqdm(total=len(cells), desc=f"cells on {workers} Ray workers", unit="cell", disable=not progress)
        done = failed = 0
        while queue or running:
            while idle and queue:
                actor, cell = idle.pop(), queue.pop(0)
                running[actor.run.remote(cell)] = (cell, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            cell, actor = running.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
                idle.append(actor)
            except ray.exceptions.RayTaskError as exc:  # the cell raised: as the local runner, the run stops
                if isinstance(exc.cause, HarnessError):
                    raise HarnessError(str(exc.cause)) from None
                raise
            except ray.exceptions.RayError as exc:  # the worker died again on this cell: a fresh one goes on
                outcome = _lost(cell, exc)
                idle.append(Worker.remote(config))
            write(cell, outcome)
            done += 1
            failed += not outcome.result.ok
            bar.update(1)
            bar.set_postfix(done=done, running=len(running), failed=failed)
        bar.close()
    finally:
        if started_here:
            ray.shutdown()


class CellWorker:
    """One Ray actor: the run's Session (model loaded at its first cell, kept for the rest)."""

    def __init__(self, config: Any):
        import torch

        from harness.session import Session

        torch.set_num_threads(max(1, int(config.cpus_per_cell)))
        self.session = Session(config)

    def run(self, cell: Cell) -> Any:
        stem, _, always = os.environ.get(CRASH_ENV, "").partition(":")
        if stem and stem == cell.stem:
            marker = self.session.config.out / f".crashed-{stem}"
            if always or not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                os._exit(1)
        return self.session.compute(cell, progress=False)


def _default_gpus() -> float:
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _worker_count(resources: dict[str, float], cpus: float, gpus: float, cells: int) -> int:
    """As many workers as the cluster's CPUs (and GPUs, when cells ask for a share) hold, at most one per cell."""
    if cpus <= 0 or gpus < 0:
        raise HarnessError(f"--cpus-per-cell {cpus} / --gpus-per-cell {gpus}: CPUs must be > 0, GPUs >= 0")
    fits = int(resources.get("CPU", 0) // cpus)
    if gpus > 0:
        fits = min(fits, int(resources.get("GPU", 0) // gpus))
    if fits < 1:
        raise HarnessError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} "
                           f"GPUs: not enough for one cell (--cpus-per-cell {cpus:g}, --gpus-per-cell {gpus:g})")
    return min(fits, cells)


def _lost(cell: Cell, exc: Exception) -> Any:
    from harness.session import Outcome

    reason = f"Ray worker lost twice ({type(exc).__name__}); rerun to compute it"
    return Outcome(CellResult(cell, status="failed", reason=reason, failed_step=0))
