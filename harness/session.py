"""One `harness eval` configuration, resolved: the cells of task × template × regime × k × seed, each cell's data
drawn once, the regimes' settings, the task data and, once a cell needs computing, the model. The local runner and
every Ray worker hold one; whether a cell is on disk already is decided here too."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.catalog import check_name
from harness.cells import draw_for, failed_result, run_cell, with_provenance
from harness.errors import CellFailed, HarnessError
from harness.forgetting import TEXT_TASK, forgetting_probes
from harness.models import EMBEDDED_ALIAS
from harness.prompts import select_templates
from harness.regimes import DEFAULT_REGIMES, get_regime, regime_names, seeded
from harness.regimes.options import as_json, hashed
from harness.regimes.protocol import Device, Regime, Shared
from harness.results import config_hash, model_slug, read_result
from harness.sampling import select_test_subset
from harness.shift import ShiftSet, shift_view
from harness.tasks import load_examples, load_task
from harness.types import ALL_K, Cell, CellResult, Example, Prediction, TaskSpec, Template

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("bbc_news",)
DEFAULT_K = (16,)
DEFAULT_SEEDS = (13,)  # one seed keeps the default run within 5 min on a slow 2-core CPU: --seeds for variance
DEFAULT_LIMIT = 200  # test examples of the default run, sized for the time budget on 2 CPU cores


@dataclass
class EvalConfig:
    """Everything `harness eval` was asked to do."""

    tasks: Sequence[str] = DEFAULT_TASKS
    model: str = EMBEDDED_ALIAS  # the default model, named once (models.py)
    regimes: Sequence[str] = DEFAULT_REGIMES
    k: Sequence[int] = DEFAULT_K  # ALL_K for the whole train split
    seeds: Sequence[int] = DEFAULT_SEEDS
    templates: str | None = None  # None: each task's default templates; "all"; or comma-separated names
    limit: int | None = DEFAULT_LIMIT
    data_dir: str | None = None
    out: Path = Path("runs")
    overwrite: bool = False
    trust_remote_code: bool = False
    # Regime options as given (None: the regime's default), named like the settings fields they set:
    # `x` sets field x of every regime that has one, `<regime>_x` that regime's alone (see regimes/options.py).
    options: Mapping[str, Any] = field(default_factory=dict)
    sequence: Sequence[str] = ()  # --sequence: these tasks trained one after another in one model (continual.py)
    eval_tasks: Sequence[str] = ()  # --eval-tasks: other tasks' test splits each cell also predicts (domain shift)
    forgetting: Sequence[str] = ()  # --forgetting: tasks whose zero-shot accuracy (and the LM's held-out NLL)
    #                                 is measured after adaptation, against the untouched model
    forgetting_text: str = TEXT_TASK  # --forgetting-text: the task whose test-split texts are the held-out text
    # Where cells run (never part of a cell's config hash): "local", one after another in this process, or "ray"
    executor: str = "local"
    ray_address: str | None = None  # --address: an existing Ray cluster; None starts a local one
    cpus_per_cell: float = 1.0  # --cpus-per-cell: each Ray worker's CPU request (and its torch threads)
    threads: int | None = None  # --threads: torch's CPU threads here; None: the cores free to this process
    gpus_per_cell: float | None = None  # --gpus-per-cell: each worker's GPU share; None: 1 where CUDA is, else 0
    command: str = ""


@dataclass
class _TaskData:
    task: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    templates: list[Template]
    test_sha256: str  # identifies the test examples by content, wherever the files live
    shifts: list[ShiftSet] = field(default_factory=list)  # --eval-tasks: other tasks' test examples, mapped


@dataclass
class _Plan:
    """The regimes of this run with their resolved settings, on the device cells will run on."""

    device: Device
    regimes: dict[str, Regime]
    settings: dict[str, dict[str, Any]]  # regime -> variant name -> its settings


@dataclass
class Outcome:
    """What computing one cell gave: its result (provenance included), its predictions, and its predictions on
    other tasks (--eval-tasks). A failed cell has a failed result and no predictions. Plain data: a Ray worker
    returns it to the driver, which writes it."""

    result: CellResult
    predictions: list[Prediction] = field(default_factory=list)
    shifted: list[Prediction] = field(default_factory=list)


class Session:
    """One `harness eval` configuration, resolved: regimes, task data, other tasks' test sets, forgetting probes,
    and (once a cell needs computing) the model. The local runner and each Ray worker hold one."""

    def __init__(self, config: EvalConfig):
        self.config = config
        model_slug(config.model)  # the model's folder name is a plain name, checked before anything runs
        self.plan = _resolve(config)
        self.data = {name: _load_task_data(name, config, self.plan) for name in config.tasks}
        targets = {name: (load_task(name), _limited_test(load_task(name), config)) for name in config.eval_tasks}
        for d in self.data.values():
            d.shifts = [shift_view(d.task, task, test, _examples_hash(test))
                        for name, (task, test) in targets.items() if name != d.task.name]
        self.probes = (forgetting_probes(config.forgetting, config.limit, config.data_dir, config.forgetting_text)
                       if config.forgetting else None)
        self.cells = [(d, cell) for d in self.data.values() for cell in _cells(d, config, self.plan)]
        # each cell's data drawn once, here: an impossible draw fails before any compute
        self.draws = {cell: self._draw(d, cell) for d, cell in self.cells}
        self.lm: Any = None
        self.shared: Shared | None = None

    def load(self) -> Any:
        """The model, loaded the first time a cell needs computing."""
        if self.lm is None:
            self.lm, self.shared = _prepare(self.config)
        return self.lm

    def paths(self, cell: Cell) -> tuple[Path, Path]:
        return cell.paths(self.config.out, model_slug(self.config.model))

    def finished(self, d: _TaskData, cell: Cell) -> CellResult | None:
        """The cell's finished result on disk, when it is this configuration's and has what this run measures."""
        regime = self.plan.regimes[cell.regime]
        return _finished(self.paths(cell)[0], self.resolved(d, cell), self.config.overwrite,
                         _extras(d, regime, self.probes))

    def compute(self, cell: Cell, progress: bool) -> Outcome:
        """Run one cell (loading the model the first time); a cell whose training broke down is a failed result."""
        d = self.data[cell.task]
        template = next(t for t in d.templates if t.name == cell.template)
        regime, settings = self.plan.regimes[cell.regime], self.plan.settings[cell.regime][cell.variant]
        resolved = self.resolved(d, cell)
        self.load()
        try:
            result, predictions, shifted = run_cell(regime, settings, self.lm, self.shared, d.task, template, cell,
                                                    self.draws[cell], d.test, progress, d.shifts, self.probes)
        except CellFailed as exc:
            return Outcome(with_provenance(failed_result(cell, str(exc), exc.step), self.lm, d.task, template, resolved))
        return Outcome(with_provenance(result, self.lm, d.task, template, resolved), predictions, shifted)

    def _draw(self, d: _TaskData, cell: Cell) -> Any:
        regime, settings = self.plan.regimes[cell.regime], self.plan.settings[cell.regime][cell.variant]
        return draw_for(cell, regime, settings, len(d.templates), d.train, d.validation, d.task)

    def resolved(self, d: _TaskData, cell: Cell) -> dict[str, Any]:
        """What determines the cell's numbers (its hash and the dict hashed), and how the run was invoked."""
        template = next(t for t in d.templates if t.name == cell.template)
        return _resolved_config(self.config, d, template, cell, self.plan)


def _extras(d: _TaskData, regime: Regime, probes: Any) -> dict[str, Any]:
    """What this run measures beside a cell's own test score (not in its config hash: the cell's predictions do
    not change): its scores on other tasks (shift) and, for a regime that adapts the backbone, forgetting."""
    wanted: dict[str, Any] = {}
    if d.shifts:
        wanted["shift"] = {s.target: s.identity() for s in d.shifts}
    if probes is not None and regime.adapts_backbone:
        wanted["forgetting"] = probes.identity(d.task.name)
    return wanted


def _finished(path: Path, resolved: dict[str, Any], overwrite: bool, wanted: dict[str, Any]) -> CellResult | None:
    """The finished result of this configuration on disk, if any (another configuration is an error); one that
    lacks a measurement this run asks for (another task's scores, forgetting) is computed again."""
    if overwrite or not path.is_file():
        return None
    existing = read_result(path)
    _check_same_config(path, existing, resolved)
    if not existing.ok or not _covers(existing.details, wanted):
        return None
    return existing


def _covers(details: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a result recorded every measurement asked for, on the same data."""
    shift = details.get("shift") or {}
    for target, identity in (wanted.get("shift") or {}).items():
        recorded = shift.get(target) or {}
        if any(recorded.get(key) != value for key, value in identity.items()):
            return False
    if "forgetting" in wanted:
        recorded = (details.get("forgetting") or {}).get("identity")
        return recorded == wanted["forgetting"]
    return True


def _check_same_config(path: Path, existing: CellResult, resolved: dict[str, Any]) -> None:
    """A cell on disk computed under another configuration is refused, never mixed in."""
    if existing.config_hash == resolved["hash"]:
        return
    if "settings" not in (existing.provenance.get("config") or {}):
        raise HarnessError(f"{path}: holds a result of another configuration (written by harness "
                           f"{(existing.provenance.get('harness') or {}).get('version', '?')}, which hashed the "
                           f"options as typed, not as resolved); use --overwrite or another --out")
    old, new = existing.provenance["config"], resolved["determining"]
    # settings at their default are not hashed: name them by their recorded values, not as missing
    hashed_keys = set(old["settings"]) | set(new["settings"])
    recorded = existing.details.get("settings") or {}
    changed = differences({**old, "settings": {k: recorded.get(k, old["settings"].get(k)) for k in hashed_keys}},
                           {**new, "settings": {k: resolved["settings"].get(k) for k in hashed_keys}})
    raise HarnessError(f"{path}: holds a result of another configuration ({changed}); use --overwrite or another --out")


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    """'settings.max_steps 4 -> 5, device cuda -> cpu': what changed between two determining configs."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = differences(a, b, f"{prefix}{key}.")
            changed += [inner] if inner else []
        elif a != b:
            changed.append(f"{prefix}{key} {a} -> {b}")
    return ", ".join(changed)


def _resolve(config: EvalConfig) -> _Plan:
    """Every regime looked up and its settings resolved for this device, before anything is loaded."""
    from harness.models import pick_device

    if not config.regimes:
        raise HarnessError(f"--regimes names no regime (known: {', '.join(regime_names())})")
    kind, dtype = pick_device()
    device = Device(kind=kind, dtype=str(dtype).removeprefix("torch."))
    regimes = {name: get_regime(name) for name in dict.fromkeys(config.regimes)}
    settings = {}
    for name, regime in regimes.items():
        variants = {regime.variant(s): s for s in regime.resolve(config.options, device)}
        settings[name] = variants
    return _Plan(device, regimes, settings)


def _prepare(config: EvalConfig) -> tuple[Any, Shared]:
    """Load the model (only when some cell needs computing) and the work its cells share."""
    from harness.models import load_model, set_threads
    from harness.regimes.features import FeatureStore

    if config.executor == "local":  # a Ray worker takes --cpus-per-cell threads
        set_threads(config.threads)
    lm = load_model(config.model, trust_remote_code=config.trust_remote_code)
    return lm, Shared(features=FeatureStore(lm.model, lm.tokenizer))


def _load_task_data(name: str, config: EvalConfig, plan: _Plan) -> _TaskData:
    task = load_task(name)
    templates = select_templates(task, config.templates)
    test = _limited_test(task, config)
    variants = [(plan.regimes[name], s) for name, by_variant in plan.settings.items() for s in by_variant.values()]
    needs_train = any(r.draws_examples or r.needs_dev(s, len(templates)) for r, s in variants)
    train = load_examples(task, "train", config.data_dir) if needs_train else []
    needs_validation = ALL_K in config.k and any(r.takes_all_k and r.needs_dev(s, len(templates)) for r, s in variants)
    validation = load_examples(task, "validation", config.data_dir) if needs_validation else []
    return _TaskData(task, train, validation, test, templates, _examples_hash(test))


def _limited_test(task: TaskSpec, config: EvalConfig) -> list[Example]:
    return select_test_subset(load_examples(task, "test", config.data_dir), config.limit)


def _cells(d: _TaskData, config: EvalConfig, plan: _Plan) -> list[Cell]:
    cells = []
    for template in d.templates:
        for name, regime in plan.regimes.items():
            for variant, settings in plan.settings[name].items():
                if variant:
                    check_name(f"{name}'s variant (from its options)", variant)
                if not seeded(regime, settings, len(d.templates)):
                    cells.append(Cell(d.task.name, template.name, name, 0, None, variant))
                    continue
                for k in config.k:
                    if k == ALL_K and not regime.takes_all_k:
                        log.warning("%s skips k=all: it cannot use a whole train split", name)
                        continue
                    cells.extend(Cell(d.task.name, template.name, name, k, s, variant) for s in config.seeds)
    return cells


def _resolved_config(config: EvalConfig, d: _TaskData, template: Template, cell: Cell, plan: _Plan) -> dict[str, Any]:
    """What determines the cell's numbers (hashed): the regime's resolved settings, the device kind and dtype,
    the data and template; plus how the run was invoked (not hashed)."""
    regime, settings = plan.regimes[cell.regime], plan.settings[cell.regime][cell.variant]
    determining = {
        "task": d.task.name, "task_version": d.task.version, "template": template.name,
        "template_sha256": template.sha256, "regime": cell.regime, "variant": cell.variant, "k": cell.k,
        "seed": cell.seed, "model": config.model, "test_sha256": d.test_sha256,
        "dev": regime.needs_dev(settings, len(d.templates)), "settings": hashed(settings),
        "device": plan.device.kind, "dtype": plan.device.dtype,
    }
    invocation = {k: v for k, v in asdict(config).items() if k != "out"}
    return {"hash": config_hash(determining), "determining": determining, "settings": as_json(settings),
            "invocation": {**invocation, "out": str(config.out)}}


def _examples_hash(examples: Sequence[Example]) -> str:
    """Identifies the test examples by content, wherever the files live."""
    text = "\n".join(json.dumps([e.id, e.label, sorted(e.fields.items())]) for e in examples)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def majority_accuracy(examples: Sequence[Example]) -> float:
    """Accuracy of always answering the most frequent class of these examples."""
    counts = Counter(e.label for e in examples)
    return max(counts.values()) / len(examples)
