"""Result files fuzzed by mutating valid ones (a field's type, range, nesting depth, NaN and Infinity, a name that
is a path, a per-example row): `harness leaderboard` and `harness verdict` read whatever comes and either use a
cell or skip it with one line naming the file and the field — never another exception, never a file outside
their output folder."""

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness.models
from harness.cli import cli
from harness.errors import HarnessError
from harness.leaderboard.build import build
from harness.leaderboard.collect import collect
from harness.leaderboard.verdict import verdict_lines

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 40)), deadline=None, suppress_health_check=list(HealthCheck))
DEEP = "DEEP"  # replaced by JSON nested far deeper than any result file
REPLACEMENTS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([math.nan, math.inf, -math.inf, 5.0, -0.5]),
    st.text(max_size=8), st.sampled_from(["../../../../x", "a/b", "..", "0.5", DEEP]),
    st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory, model, tokenizer):
    """A real run folder of the toy task: zero-shot, few-shot and head on two seeds (tiny model)."""
    from harness.models import LoadedModel

    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path_factory.mktemp("valid") / "runs"
    loaded = LoadedModel(model=model, tokenizer=tokenizer, identity={"source": "test", "id": "tiny"}, device="cpu",
                         dtype="float32")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_TASKS_DIR", str(fixtures / "tasks"))
        patch.setenv("HARNESS_PROMPTS_DIR", str(fixtures / "prompts"))
        patch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
        result = CliRunner().invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes",
                                          "zero-shot,few-shot,head", "--k", "2", "--seeds", "13,21", "--limit", "all",
                                          "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _paths(value, prefix=()):
    """Every path into a JSON value (keys and list positions)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value[:3]):
            yield from _paths(child, (*prefix, i))


def _set(value, path, new):
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


def _dump(data) -> str:
    text = json.dumps(data)
    return text.replace(json.dumps(DEEP), "[" * 20000 + "]" * 20000)


@FUZZ
@given(data=st.data())
def test_mutated_result_files_are_used_or_skipped_in_one_line(valid_run, data):
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        shutil.copytree(valid_run, runs)
        files = sorted(p for p in runs.rglob("*.json"))
        target = data.draw(st.sampled_from(files))
        raw = json.loads(target.read_text())
        paths = [p for p in _paths(raw) if p]
        for _ in range(data.draw(st.integers(1, 3))):
            _set(raw, data.draw(st.sampled_from(paths)), data.draw(REPLACEMENTS))
            paths = [p for p in _paths(raw) if p]
        target.write_text(_dump(raw))
        if data.draw(st.booleans()):  # a per-example row too
            rows_file = data.draw(st.sampled_from(sorted(runs.rglob("*.jsonl"))))
            rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
            row = data.draw(st.sampled_from(rows))
            row[data.draw(st.sampled_from(["pred", "gold", "probs", "id"]))] = data.draw(REPLACEMENTS)
            rows_file.write_text("".join(_dump(r) + "\n" for r in rows))
        out = Path(folder) / "lb"
        try:
            built = build([runs], out, headline_k=2)
            assert all("\n" not in p for p in built.problems)
            verdict_lines(collect([runs]).cells, [2])
        except HarnessError as exc:
            assert "\n" not in str(exc).strip()
        outside = [p for p in Path(folder).rglob("*") if p.is_file() and runs not in p.parents and out not in p.parents]
        assert not outside, outside  # nothing written outside the output folder


def test_out_of_range_and_nan_metrics_are_skipped_naming_the_field(valid_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(valid_run, runs)
    for value, message in ((5.0, "field metrics: Value error, accuracy = 5.0 is outside [0, 1]"),
                           (math.nan, "field metrics.accuracy: Input should be a finite number")):
        path = next(runs.rglob("head_k2_seed13.json"))
        raw = json.loads(path.read_text())
        raw["metrics"]["accuracy"] = value
        path.write_text(json.dumps(raw))
        collected = collect([runs])
        assert collected.skipped == 1 and any(message in p for p in collected.problems), collected.problems


def test_a_task_name_that_is_a_path_never_becomes_a_file_name(valid_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(valid_run, runs)
    for path in runs.rglob("*.json"):
        raw = json.loads(path.read_text())
        raw["cell"]["task"] = "../../../../x"
        path.write_text(json.dumps(raw))
    with pytest.raises(HarnessError, match="no usable result files"):
        build([runs], tmp_path / "lb")
    assert not (tmp_path / "x").exists() and not list(tmp_path.parent.glob("x*"))


def test_a_per_example_row_out_of_range_leaves_the_cell_out_of_significance(valid_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(valid_run, runs)
    path = next(runs.rglob("head_k2_seed13.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["pred"], rows[1]["probs"] = 7, [0.5]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = collect([runs]).problems
    assert any("row 1: pred 7 is not a class (0 .. 1)" in p for p in problems), problems
