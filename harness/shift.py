"""Domain shift (`--eval-tasks`): another task's test split read as this task's inputs and labels.

A cell trained on a source task also predicts a target task's test examples: their fields renamed (or rebuilt by
the target file's `domain_shift.<source>.field_map`), their labels mapped to the source's by name or by
`domain_shift.<source>.label_map`; target examples whose label has no source label are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.prompts import render_fields
from harness.types import Example, Prediction, TaskSpec

ID_SEPARATOR = "::"  # target example ids become "<target>::<id>", apart from the source's own test ids


@dataclass(frozen=True)
class ShiftSet:
    """A target task's test examples as a source task's cells read them."""

    source: str
    target: str
    target_version: int
    examples: tuple[Example, ...]  # source field names, source label indices, ids "<target>::<id>"
    label_map: dict[str, str]  # target label -> source label
    approximate: tuple[str, ...] = ()  # target labels mapped only approximately
    left_out: dict[str, int] = field(default_factory=dict)  # target label -> test examples left out (unmapped)
    test_sha256: str = ""

    def identity(self) -> dict[str, Any]:
        """What a result records about the target set (and what tells a finished cell it was scored on it)."""
        return {"task_version": self.target_version, "test_sha256": self.test_sha256, "n": len(self.examples),
                "label_map": self.label_map, "approximate": list(self.approximate), "left_out": self.left_out}


def shift_view(source: TaskSpec, target: TaskSpec, test: Sequence[Example], test_sha256: str = "") -> ShiftSet:
    """The target's test examples as the source's inputs and labels; labels or fields that do not map are one
    line naming both tasks."""
    entry = target.domain_shift.get(source.name)
    if entry is not None:
        label_map = dict(entry.label_map)
    else:
        unknown = [name for name in target.label_names if name not in source.label_names]
        if unknown:
            raise HarnessError(
                f"--eval-tasks {target.name}: its labels {', '.join(unknown)} are not {source.name}'s labels "
                f"({', '.join(source.label_names)}); map them in {target.path} under domain_shift.{source.name}.label_map")
        label_map = {name: name for name in target.label_names}
    bad = {t: s for t, s in label_map.items() if s not in source.label_names}
    if bad:
        t, s = next(iter(bad.items()))
        raise HarnessError(f"{target.path}: domain_shift.{source.name}.label_map maps {t} to '{s}', not one of "
                           f"{source.name}'s labels ({', '.join(source.label_names)})")
    field_map = dict(entry.field_map) if entry is not None else {}
    missing = [f for f in source.input_fields if f not in field_map and f not in target.input_fields]
    if missing:
        raise HarnessError(f"--eval-tasks {target.name}: has no field {', '.join(missing)} that {source.name}'s "
                           f"templates read (its fields: {', '.join(target.input_fields)}); build them in "
                           f"{target.path} under domain_shift.{source.name}.field_map")
    examples, left_out = [], Counter()
    for example in test:
        name = target.label_names[example.label]
        if name not in label_map:
            left_out[name] += 1
            continue
        fields = {f: example.fields[f] for f in source.input_fields if f not in field_map}
        fields.update(render_fields({f: field_map[f] for f in source.input_fields if f in field_map}, example,
                                    target.path))
        examples.append(Example(f"{target.name}{ID_SEPARATOR}{example.id}", fields,
                                source.label_names.index(label_map[name])))
    if not examples:
        raise HarnessError(f"--eval-tasks {target.name}: none of its test labels map to {source.name}'s "
                           f"({', '.join(source.label_names)})")
    return ShiftSet(source.name, target.name, target.version, tuple(examples), label_map,
                    tuple(entry.approximate) if entry is not None else (), dict(left_out), test_sha256)


def split_predictions(predictions: Sequence[Prediction]) -> tuple[list[Prediction], dict[str, list[Prediction]]]:
    """(the source's own test predictions, each target's predictions), told apart by their ids."""
    own, targets = [], {}
    for p in predictions:
        target, sep, _ = p.id.partition(ID_SEPARATOR)
        if sep:
            targets.setdefault(target, []).append(p)
        else:
            own.append(p)
    return own, targets
