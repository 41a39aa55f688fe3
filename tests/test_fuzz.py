"""Fuzzing the inputs a user writes: whatever hypothesis generates ends in a result or a one-line HarnessError
(a ValueError naming the problem, for result files read by the leaderboard), never another exception."""

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.leaderboard.collect import collect
from harness.prompts import load_template, render_input
from harness.tasks import load_examples, parse_task_file
from harness.types import CellResult, Example

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.floats(allow_nan=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
TASK_KEYS = ["name", "version", "description", "dataset", "splits", "input_fields", "label_field", "label_names",
             "metrics", "templates", "extra"]
GOOD_TASK = {"name": "fuzz", "version": 1, "dataset": {"data_files": {"test": "test.jsonl"}}, "splits": {"test": "test"},
             "input_fields": ["text"], "label_field": "label", "label_names": ["no", "yes"], "metrics": ["accuracy"],
             "templates": ["t"]}


def _one_line(exc: HarnessError) -> None:
    assert str(exc) and "\n" not in str(exc).strip()


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(TASK_KEYS), json_values, max_size=4),
       drop=st.lists(st.sampled_from(TASK_KEYS), max_size=2), raw=st.one_of(st.none(), st.text(max_size=40)))
def test_task_files(changes, drop, raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        task = {k: v for k, v in {**GOOD_TASK, **changes}.items() if k not in drop}
        path.write_text(raw if raw is not None else yaml.safe_dump(task))
        try:
            parse_task_file(path)
        except HarnessError as exc:
            _one_line(exc)


@FUZZ
@given(rows=st.lists(st.one_of(json_values, st.fixed_dictionaries({"text": json_values, "label": json_values})),
                     max_size=4),
       garbage=st.one_of(st.none(), st.binary(max_size=20)))
def test_jsonl_rows(rows, garbage):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "fuzz.yaml").write_text(yaml.safe_dump(GOOD_TASK))
        data = "".join(json.dumps(r) + "\n" for r in rows).encode() + (garbage or b"")
        (Path(folder) / "test.jsonl").write_bytes(data)
        try:
            examples = load_examples(parse_task_file(Path(folder) / "fuzz.yaml"), "test")
            assert all(isinstance(e.fields["text"], str) and e.label in (0, 1) for e in examples)
        except HarnessError as exc:
            _one_line(exc)


HEADER_KEYS = ["description", "verbalizers", "delimiter", "separator", "other"]
BODIES = ["{{ text }}", "{{ text | upper }} it was", "{{ 1 / 0 }}", "{{ body }}", "{% if %}", "{{ text.__class__ }}",
          "{% include 'x' %}", "{{ text[5:] }}", "{{ range(3) | list }}", ""]


@FUZZ
@given(header=st.dictionaries(st.sampled_from(HEADER_KEYS), json_values, max_size=3),
       verbalizers=st.one_of(st.none(), st.dictionaries(st.sampled_from(["no", "yes", "maybe"]), scalars, max_size=3)),
       body=st.sampled_from(BODIES), text=st.text(max_size=10))
def test_template_headers_and_bodies(header, verbalizers, body, text):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "fuzz.yaml").write_text(yaml.safe_dump(GOOD_TASK))
        task = parse_task_file(root / "fuzz.yaml")
        if verbalizers is not None:
            header = {**header, "verbalizers": verbalizers}
        (root / "fuzz").mkdir()
        (root / "fuzz" / "t.jsonl").write_text("")
        prompts = root / "prompts" / "fuzz"
        prompts.mkdir(parents=True)
        (prompts / "t.jinja").write_text("{#\n" + yaml.safe_dump(header) + "#}\n" + body + "\n")
        import os

        old = os.environ.get("HARNESS_PROMPTS_DIR")
        os.environ["HARNESS_PROMPTS_DIR"] = str(root / "prompts")
        try:
            template = load_template(task, "t")
            assert isinstance(render_input(template, Example("x", {"text": text}, 0)), str)
        except HarnessError as exc:
            _one_line(exc)
        finally:
            if old is None:
                os.environ.pop("HARNESS_PROMPTS_DIR")
            else:
                os.environ["HARNESS_PROMPTS_DIR"] = old


RESULT_KEYS = ["cell", "status", "metrics", "n", "cost", "config_hash", "reason"]
GOOD_CELL = {"task": "t", "template": "a", "regime": "few-shot", "k": 2, "seed": 1, "variant": ""}


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(RESULT_KEYS), json_values, max_size=3),
       cell=st.dictionaries(st.sampled_from(list(GOOD_CELL) + ["other"]), json_values, max_size=2))
def test_result_files(changes, cell):
    raw = {"cell": {**GOOD_CELL, **cell}, "status": "ok", "metrics": {"accuracy": 0.5}, "n": 1, "cost": {},
           "config_hash": "h", **changes}
    try:
        CellResult.from_json(raw)
    except ValueError as exc:
        assert str(exc)
    with tempfile.TemporaryDirectory() as folder:
        cell_dir = Path(folder) / "m" / "t" / "a"
        cell_dir.mkdir(parents=True)
        (cell_dir / "c.json").write_text(json.dumps(raw))
        try:
            collect([folder])
        except HarnessError as exc:
            _one_line(exc)


def test_a_newline_in_a_result_name_stays_on_one_line():
    """The case hypothesis found: a task name of a bare newline used to be quoted raw into the error."""
    raw = {"cell": {**GOOD_CELL, "task": "\n"}, "status": "ok", "metrics": {"accuracy": 0.5}, "n": 1, "cost": {},
           "config_hash": "h"}
    with tempfile.TemporaryDirectory() as folder:
        cell_dir = Path(folder) / "m" / "t" / "a"
        cell_dir.mkdir(parents=True)
        (cell_dir / "c.json").write_text(json.dumps(raw))
        with pytest.raises(HarnessError) as caught:
            collect([folder])
    _one_line(caught.value)
