"""task × template × regime × k × seed -> cells -> result files on disk (resumable)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import HarnessError
from harness.metrics import compute_metrics
from harness.prompts import select_templates
from harness.results import Cell, config_hash, harness_provenance, model_slug, read_result, write_cell
from harness.sampling import TEST_SUBSET_SEED, KShotDraw, draw_kshot, select_test_subset
from harness.tasks import load_examples, load_task, resolve_data_dir
from harness.types import REGIMES, Example, Prediction, TaskSpec, Template

log = logging.getLogger(__name__)

PROMPTING = ("zero-shot", "few-shot")
DEFAULT_TASKS = ("bbc_news",)
DEFAULT_REGIMES = ("zero-shot", "few-shot")
DEFAULT_K = (16,)
DEFAULT_SEEDS = (13, 21)
DEFAULT_LIMIT = 200  # test examples of the default run, sized for the time budget on 2 CPU cores


@dataclass
class EvalConfig:
    """Everything `harness eval` was asked to do."""

    tasks: Sequence[str] = DEFAULT_TASKS
    model: str = "smollm2-135m"
    regimes: Sequence[str] = DEFAULT_REGIMES
    k: Sequence[int] = DEFAULT_K
    seeds: Sequence[int] = DEFAULT_SEEDS
    templates: str | None = None  # None: each task's default templates; "all"; or comma-separated names
    limit: int | None = DEFAULT_LIMIT
    data_dir: str | None = None
    out: Path = Path("runs")
    batch_size: int = 16
    overwrite: bool = False
    trust_remote_code: bool = False
    command: str = ""


@dataclass
class RunReport:
    """What a run did: every cell's result (computed or found on disk) and the majority baselines."""

    results: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    skipped: int = 0
    majority: dict[str, float] = field(default_factory=dict)


@dataclass
class _TaskData:
    task: TaskSpec
    train: list[Example]
    test: list[Example]
    templates: list[Template]


def run_eval(config: EvalConfig, on_cell: Callable[[Cell, dict[str, Any], str], None] | None = None,
             progress: bool = False) -> RunReport:
    """Check every input, then compute the cells not already on disk, writing each as it finishes."""
    for regime in config.regimes:
        if regime not in REGIMES:
            raise HarnessError(f"unknown regime '{regime}' (known: {', '.join(REGIMES)})")
        if regime not in PROMPTING:
            raise HarnessError(f"regime '{regime}' is not available yet (available: {', '.join(PROMPTING)})")
    data = [_load_task_data(name, config) for name in config.tasks]
    plan = [(d, cell) for d in data for cell in _cells(d, config)]
    for d, cell in plan:  # fail on an impossible draw before any compute
        if cell.seed is not None:
            draw_kshot(d.train, cell.k, cell.seed, d.task.label_names)
    report = RunReport(majority={d.task.name: _majority(d.test) for d in data})
    slug = model_slug(config.model)
    lm = None
    for d, cell in plan:
        json_path, jsonl_path = cell.paths(config.out, slug)
        template = next(t for t in d.templates if t.name == cell.template)
        resolved = _resolved_config(config, d, template, cell)
        if json_path.is_file() and not config.overwrite:
            existing = read_result(json_path)
            if existing.get("config_hash") != resolved["hash"]:
                raise HarnessError(
                    f"{json_path}: holds a result of another configuration; use --overwrite or another --out"
                )
            report.results.append(existing)
            report.skipped += 1
            if on_cell:
                on_cell(cell, existing, "skipped")
            continue
        if lm is None:
            from harness.models import load_model  # heavy: only when some cell needs computing

            lm = load_model(config.model, trust_remote_code=config.trust_remote_code)
        result, predictions = _run_cell(lm, d, template, cell, config, resolved, progress)
        write_cell(json_path, jsonl_path, result, predictions)
        report.results.append(result)
        report.computed += 1
        if on_cell:
            on_cell(cell, result, "computed")
    return report


def _load_task_data(name: str, config: EvalConfig) -> _TaskData:
    task = load_task(name)
    templates = select_templates(task, config.templates)
    test = select_test_subset(load_examples(task, "test", config.data_dir), config.limit)
    train = load_examples(task, "train", config.data_dir) if "few-shot" in config.regimes else []
    return _TaskData(task, train, test, templates)


def _cells(d: _TaskData, config: EvalConfig) -> list[Cell]:
    cells = []
    for template in d.templates:
        for regime in config.regimes:
            if regime == "zero-shot":
                cells.append(Cell(d.task.name, template.name, regime, 0, None))
            else:
                cells.extend(Cell(d.task.name, template.name, regime, k, s) for k in config.k for s in config.seeds)
    return cells


def _resolved_config(config: EvalConfig, d: _TaskData, template: Template, cell: Cell) -> dict[str, Any]:
    """What determines the cell's numbers (hashed), plus how the run was invoked (not hashed)."""
    determining = {
        "task": d.task.name, "task_version": d.task.version, "template": template.name,
        "template_sha256": template.sha256, "regime": cell.regime, "k": cell.k, "seed": cell.seed,
        "model": config.model, "test_ids_sha256": _ids_hash(d.test), "data_dir": str(resolve_data_dir(config.data_dir)),
    }
    return {
        "hash": config_hash(determining), "determining": determining,
        "invocation": {**{k: v for k, v in asdict(config).items() if k != "out"}, "out": str(config.out)},
    }


def _ids_hash(examples: Sequence[Example]) -> str:
    return hashlib.sha256("\n".join(e.id for e in examples).encode()).hexdigest()[:16]


def _run_cell(lm: Any, d: _TaskData, template: Template, cell: Cell, config: EvalConfig,
              resolved: dict[str, Any], progress: bool) -> tuple[dict[str, Any], list[Prediction]]:
    from harness.regimes.prompting import predict_prompting

    draw = draw_kshot(d.train, cell.k, cell.seed, d.task.label_names) if cell.seed is not None else KShotDraw((), ())
    started = time.perf_counter()
    run = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, d.test, draw.train,
                            config.batch_size, progress)
    wall = time.perf_counter() - started
    preds = run.predictions
    n_classes = len(d.task.label_names)
    result = {
        "cell": asdict(cell),
        "status": "ok",
        "metrics": compute_metrics(d.task.metrics, preds),
        "n": len(preds),
        "effective_k": {
            "requested": cell.k,
            "min": min(p.n_demos for p in preds) / n_classes,
            "mean": sum(p.n_demos for p in preds) / len(preds) / n_classes,
        },
        "context": {
            "max_length": lm.max_length,
            "examples_with_demos_dropped": sum(p.n_demos < len(draw.train) for p in preds),
            "examples_truncated_left": sum(p.truncated_tokens > 0 for p in preds),
        },
        "demo_ids": [e.id for e in draw.train],
        "wall_time_s": round(wall, 3),
        "tokens_processed": run.stats.tokens,
        "forward_passes": run.stats.forwards,
        "task_version": d.task.version,
        "template_sha256": template.sha256,
        "template_text": template.source,
        "verbalizers": list(template.verbalizers),
        "model": lm.identity,
        "device": lm.device,
        "seeds": {"sampling": cell.seed, "test_subset": TEST_SUBSET_SEED},
        "harness": harness_provenance(),
        "config": resolved["determining"],
        "invocation": resolved["invocation"],
        "config_hash": resolved["hash"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return result, preds


def _majority(examples: Sequence[Example]) -> float:
    """Accuracy of always answering the most frequent class of these examples."""
    counts = Counter(e.label for e in examples)
    return max(counts.values()) / len(examples)
