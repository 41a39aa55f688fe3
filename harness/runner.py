"""task × template × regime × k × seed -> cells -> result files on disk (resumable)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.cells import CellFailed, draw_for, provenance, run_cell
from harness.errors import HarnessError
from harness.prompts import select_templates
from harness.results import Cell, config_hash, model_slug, read_result, write_atomic, write_cell
from harness.sampling import select_test_subset
from harness.tasks import load_examples, load_task
from harness.types import REGIMES, Example, TaskSpec, Template

log = logging.getLogger(__name__)

FULL_K = -1  # --k full: the whole train split, with the validation split as dev
DEFAULT_TASKS = ("bbc_news",)
DEFAULT_REGIMES = REGIMES
DEFAULT_K = (16,)
DEFAULT_SEEDS = (13, 21)
DEFAULT_LIMIT = 200  # test examples of the default run, sized for the time budget on 2 CPU cores


@dataclass
class EvalConfig:
    """Everything `harness eval` was asked to do."""

    tasks: Sequence[str] = DEFAULT_TASKS
    model: str = "smollm2-135m"
    regimes: Sequence[str] = DEFAULT_REGIMES
    k: Sequence[int] = DEFAULT_K  # FULL_K for the whole train split
    seeds: Sequence[int] = DEFAULT_SEEDS
    templates: str | None = None  # None: each task's default templates; "all"; or comma-separated names
    limit: int | None = DEFAULT_LIMIT
    data_dir: str | None = None
    out: Path = Path("runs")
    batch_size: int = 16
    overwrite: bool = False
    trust_remote_code: bool = False
    unfreeze_top: int = 0
    pooling: str = "last"
    head_init: str = "zero"
    full_learning_rates: Sequence[float] | None = None  # None: the device's default grid
    full_steps: int | None = None
    full_defaults: str | None = None  # "cpu" or "cuda": that device kind's FullConfig defaults; None: the device in use
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    max_tokens: int = 256
    command: str = ""


@dataclass
class RunReport:
    """What a run did: every cell's result (computed or found on disk) and the majority baselines."""

    results: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    majority: dict[str, float] = field(default_factory=dict)


@dataclass
class _TaskData:
    task: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    templates: list[Template]


def run_eval(config: EvalConfig, on_cell: Callable[[Cell, dict[str, Any], str], None] | None = None,
             progress: bool = False) -> RunReport:
    """Check every input, then compute the cells not already on disk, writing each as it finishes."""
    _check_options(config)
    data = [_load_task_data(name, config) for name in config.tasks]
    plan = [(d, cell) for d in data for cell in _cells(d, config)]
    for d, cell in plan:  # fail on an impossible draw before any compute
        draw_for(cell, d.train, d.validation, d.task, len(d.templates) > 1)
    report = RunReport(majority={d.task.name: _majority(d.test) for d in data})
    slug = model_slug(config.model)
    lm = store = options = None
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
            if existing.get("status") == "ok":
                report.results.append(existing)
                report.skipped += 1
                if on_cell:
                    on_cell(cell, existing, "skipped")
                continue
        if lm is None:
            lm, store, options = _prepare(config)
        draw = draw_for(cell, d.train, d.validation, d.task, len(d.templates) > 1)
        try:
            record, predictions = run_cell(lm, store, d.task, template, cell, draw, d.test, options, progress)
        except CellFailed as exc:
            result = provenance({"status": "failed", "reason": str(exc), "failed_step": exc.step}, lm, cell,
                                d.task, template, resolved)
            write_atomic(json_path, _dumps(result))
            report.results.append(result)
            report.failed += 1
            if on_cell:
                on_cell(cell, result, "failed")
            continue
        result = provenance(record, lm, cell, d.task, template, resolved)
        write_cell(json_path, jsonl_path, result, predictions)
        report.results.append(result)
        report.computed += 1
        if on_cell:
            on_cell(cell, result, "computed")
    return report


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2) + "\n"


def _check_options(config: EvalConfig) -> None:
    for regime in config.regimes:
        if regime not in REGIMES:
            raise HarnessError(f"unknown regime '{regime}' (known: {', '.join(REGIMES)})")
    from harness.regimes.head import HEAD_INITS
    from harness.regimes.training import POOLINGS

    if config.pooling not in POOLINGS:
        raise HarnessError(f"unknown pooling '{config.pooling}' (known: {', '.join(POOLINGS)})")
    if config.head_init not in HEAD_INITS:
        raise HarnessError(f"unknown head init '{config.head_init}' (known: {', '.join(HEAD_INITS)})")
    if config.unfreeze_top < 0:
        raise HarnessError(f"--unfreeze-top must be 0 or more, got {config.unfreeze_top}")


def _prepare(config: EvalConfig) -> tuple[Any, Any, dict[str, Any]]:
    """Load the model (only when some cell needs computing) and fix the regimes' settings."""
    from harness.models import load_model
    from harness.regimes.features import FeatureStore

    lm = load_model(config.model, trust_remote_code=config.trust_remote_code)
    return lm, FeatureStore(lm.model, lm.tokenizer, config.max_tokens), _regime_options(config, lm.device)


def _regime_options(config: EvalConfig, device: str) -> dict[str, Any]:
    """The settings of each regime: CLI options over the device's defaults."""
    from dataclasses import replace

    from harness.regimes.full import FullConfig
    from harness.regimes.head import HeadConfig

    full = FullConfig.for_device(config.full_defaults or device)
    full = replace(full, pooling=config.pooling, init=config.head_init, grad_accum=config.grad_accum,
                   gradient_checkpointing=config.gradient_checkpointing, max_tokens=config.max_tokens,
                   learning_rates=tuple(config.full_learning_rates or full.learning_rates),
                   max_steps=config.full_steps or full.max_steps)
    head = HeadConfig(unfreeze_top=config.unfreeze_top, pooling=config.pooling, init=config.head_init,
                      batch_size=config.batch_size)
    return {"batch_size": config.batch_size, "head": head, "full": full}


def _load_task_data(name: str, config: EvalConfig) -> _TaskData:
    task = load_task(name)
    templates = select_templates(task, config.templates)
    test = _limited_test(task, config)
    needs_train = any(r != "zero-shot" for r in config.regimes) or len(templates) > 1
    train = load_examples(task, "train", config.data_dir) if needs_train else []
    needs_validation = FULL_K in config.k and any(r in ("head", "full") for r in config.regimes)
    validation = load_examples(task, "validation", config.data_dir) if needs_validation else []
    return _TaskData(task, train, validation, test, templates)


def _limited_test(task: TaskSpec, config: EvalConfig) -> list[Example]:
    return select_test_subset(load_examples(task, "test", config.data_dir), config.limit)


def _cells(d: _TaskData, config: EvalConfig) -> list[Cell]:
    variant = {"head": _head_variant(config), "full": "verbalizer-init" if config.head_init == "verbalizer" else ""}
    cells = []
    for template in d.templates:
        for regime in config.regimes:
            if regime == "zero-shot":
                cells.append(Cell(d.task.name, template.name, regime, 0, None))
                continue
            for k in config.k:
                if k == FULL_K and regime == "few-shot":
                    log.warning("few-shot skips k=full: a whole train split does not fit in a prompt")
                    continue
                cells.extend(Cell(d.task.name, template.name, regime, k, s, variant.get(regime, ""))
                             for s in config.seeds)
    return cells


def _head_variant(config: EvalConfig) -> str:
    parts = [f"top{config.unfreeze_top}"] if config.unfreeze_top else []
    if config.pooling != "last":
        parts.append(f"{config.pooling}-pool")
    if config.head_init == "verbalizer":
        parts.append("verbalizer-init")
    return "-".join(parts)


def _resolved_config(config: EvalConfig, d: _TaskData, template: Template, cell: Cell) -> dict[str, Any]:
    """What determines the cell's numbers (hashed), plus how the run was invoked (not hashed)."""
    determining = {
        "task": d.task.name, "task_version": d.task.version, "template": template.name,
        "template_sha256": template.sha256, "regime": cell.regime, "variant": cell.variant, "k": cell.k,
        "seed": cell.seed, "model": config.model, "test_sha256": _examples_hash(d.test),
        "prompt_dev": len(d.templates) > 1 and cell.regime in ("zero-shot", "few-shot"),
    }
    if cell.regime in ("head", "full"):
        determining["max_tokens"] = config.max_tokens
    if cell.regime == "full":
        determining.update(full_learning_rates=list(config.full_learning_rates or []), full_steps=config.full_steps,
                           grad_accum=config.grad_accum)
    invocation = {k: v for k, v in asdict(config).items() if k != "out"}
    return {"hash": config_hash(determining), "determining": determining,
            "invocation": {**invocation, "out": str(config.out)}}


def _examples_hash(examples: Sequence[Example]) -> str:
    """Identifies the test examples by content, wherever the files live."""
    text = "\n".join(json.dumps([e.id, e.label, sorted(e.fields.items())]) for e in examples)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _majority(examples: Sequence[Example]) -> float:
    """Accuracy of always answering the most frequent class of these examples."""
    counts = Counter(e.label for e in examples)
    return max(counts.values()) / len(examples)
