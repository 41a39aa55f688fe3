"""The one schema of a result file, checked wherever one is read (`harness eval` resuming a run, the leaderboard,
the verdict): every field the harness reads is typed and ranged — rates in [0, 1], counts ≥ 0, numbers finite
(no NaN or Infinity), names that become file names safe (no path) — and unknown fields are allowed (newer
harness versions add some). A file that fails is one line naming the field; it is never trusted field by field.
Built on pydantic (strict: a string is not a number, a bool is not an int).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.catalog import SAFE_NAME
from harness.metrics import METRICS

MAX_DEPTH = 64  # JSON nested deeper than this is not a result file (and would exhaust Python's recursion)

Rate = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Finite = float  # finiteness comes from allow_inf_nan=False


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")


def _safe(value: str) -> str:
    if not SAFE_NAME.match(value):
        raise ValueError(f"{value!r} is not a safe name (no path)")
    return value


class CellModel(_Strict):
    task: str
    template: str
    regime: str
    k: Annotated[int, Field(ge=-1)]
    seed: int | None
    variant: str = ""

    @field_validator("task", "template", "regime")
    @classmethod
    def _names(cls, value: str) -> str:
        return _safe(value)

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return _safe(value) if value else value


class CostModel(_Strict):
    trainable_parameters: Count = 0
    train_examples: Count = 0
    dev_examples: Count = 0
    train_steps: Count = 0
    train_tokens: Count = 0
    train_wall_time_s: Annotated[float, Field(ge=0)] = 0.0
    train_flops: Annotated[float, Field(ge=0)] = 0
    feature_tokens_run: Count = 0
    inference_flops_per_example: Annotated[float, Field(ge=0)] = 0.0
    stored_bytes_per_task: Annotated[float, Field(ge=0)] = 0
    trainable_parameters_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    total_parameters: Count = 0
    peak_rss_bytes: Count | None = None
    peak_cuda_bytes: Count | None = None
    block_parameters: Count = 0


class RunModel(_Strict):
    learning_rate: Finite
    history: list[dict[str, Finite]]


class SelectionModel(_Strict):
    rule: str | None = None
    dev_accuracy: Rate | None = None
    dev_loss: Annotated[float, Field(ge=0)] | None = None
    dev_score: Finite | None = None
    chosen: dict[str, float | int | str | None] | None = None
    best_step: Count | None = None
    steps: Count | None = None
    history: list[dict[str, Finite]] | None = None
    runs: list[RunModel] | None = None
    grid: list[dict[str, Finite]] | list[Finite] | None = None  # harness 0.1: the values alone


class SettingsModel(_Strict):
    """The budget and grids a regime recorded, as the selection flags read them; other settings pass through."""
    eval_every: Count | None = None
    patience: Count | None = None
    max_steps: Count | None = None
    min_steps: Count | None = None
    learning_rates: list[Finite] | None = None
    c_grid: list[Finite] | None = None


class DemosSelectionModel(_Strict):
    dev_accuracy: list[Rate] | None = None  # each number of demos' dev accuracy (few-shot)


class ShiftModel(_Strict):
    n: Count
    metrics: dict[str, Finite]


class ChangeModel(_Strict):
    before: Finite
    after: Finite
    change: Finite
    ci95: Annotated[list[Finite], Field(min_length=2, max_length=2)]


class ZeroShotChange(ChangeModel):
    before: Rate
    after: Rate
    n: Count


class ForgettingModel(_Strict):
    nll_per_token: ChangeModel
    zero_shot: dict[str, ZeroShotChange] = {}

    @field_validator("zero_shot")
    @classmethod
    def _tasks(cls, value: dict[str, ZeroShotChange]) -> dict[str, ZeroShotChange]:
        for name in value:
            _safe(name)
        return value


class CalibrationModel(_Strict):
    prior: list[Annotated[float, Field(ge=0)]]


class ModelIdentity(_Strict):
    source: str | None = None
    id: str | None = None
    path: str | None = None
    sha256: str | None = None
    revision: str | None = None


class InvocationModel(_Strict):
    command: str = ""


class HarnessModel(_Strict):
    version: str | None = None
    git_commit: str | None = None


class ResultModel(_Strict):
    cell: CellModel
    status: Literal["ok", "failed"] = "ok"
    reason: str | None = None
    failed_step: int | None = None
    # a finished cell's
    metrics: dict[str, Finite] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    wall_time_s: Annotated[float, Field(ge=0)] | None = None
    cost: CostModel | None = None
    config_hash: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # what regimes record, as the leaderboard reads it
    selection: SelectionModel | None = None
    warnings: list[str] | None = None
    tied_predictions: Count | None = None
    predicted_distribution: dict[str, Rate] | None = None
    shift: dict[str, ShiftModel] | None = None
    forgetting: ForgettingModel | None = None
    calibration: CalibrationModel | None = None
    settings: SettingsModel | None = None
    demos_selection: DemosSelectionModel | None = None
    train_ids: list[str] | None = None
    dev_ids: list[str] | None = None
    demo_ids: list[str] | None = None
    # provenance
    task_version: int | None = None
    template_sha256: str | None = None
    template_text: str | None = None
    template_file: str | None = None
    verbalizers: list[str] | None = None
    model: ModelIdentity | None = None
    device: str | None = None
    harness: HarnessModel | None = None
    config: dict[str, Any] | None = None
    invocation: InvocationModel | None = None
    created_at: str | None = None

    @field_validator("metrics")
    @classmethod
    def _metric_ranges(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, number in (value or {}).items():
            metric = METRICS.get(name)
            low, high = (0.0, 1.0) if metric is None or metric.rate else (-1.0, 1.0)
            if not low <= number <= high:
                raise ValueError(f"{name} = {number} is outside [{low:g}, {high:g}]")
        return value

    @field_validator("shift")
    @classmethod
    def _targets(cls, value: dict[str, ShiftModel] | None) -> dict[str, ShiftModel] | None:
        for name in value or {}:
            _safe(name)
        return value


def check_result(raw: Any) -> None:
    """A result file's JSON object against the schema; ValueError names the first bad field in one line."""
    if _depth(raw) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels: not a result file")
    if not isinstance(raw, dict):
        raise ValueError("not a harness result file")
    try:
        parsed = ResultModel.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        # a key is the file's own text: written as repr where it is not a plain name, so the line stays one line
        where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in error["loc"]) or "the file"
        shown = repr(error.get("input"))
        raise ValueError(f"field {where}: {error['msg']} (got {shown[:40] + '...' if len(shown) > 40 else shown})") \
            from None
    if parsed.status == "ok":
        missing = [k for k in ("metrics", "n", "config_hash", "cost") if getattr(parsed, k) is None]
        if missing:
            raise ValueError(f"partial result file (no {', '.join(missing)})")


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """How deep a JSON value nests (counted up to limit, without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth >= limit:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest
