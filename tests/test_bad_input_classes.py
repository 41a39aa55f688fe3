"""The classes a fresh bad-input matrix found (fourth round): names that would become paths, numbers out of range,
test ids twice, templates that render differently each run or enormously, YAML alias bombs, few-shot grids whose
demos cannot fit, and threads beyond the free cores. Each ends in one line naming the file, key or value."""

import json

import pytest

from harness import models
from test_bad_input import RUN, invoke, one_line, toy  # noqa: F401 (the fixture)


@pytest.mark.parametrize("args, message", [
    (["--tasks", "../outside"], "task '../outside' is not a name (letters, digits"),
    (["--tasks", "toy", "--eval-tasks", "a/b"], "task 'a/b' is not a name"),
    (["--tasks", "toy", "--templates", "../cloze"], "template '../cloze' is not a name"),
    (["--tasks", "toy", "--model", ".hidden"], "model folder name '.hidden' is not a name"),
    (["--tasks", "toy", "--regimes", "lora", "--lora-targets", "q_proj/../x"], "lora's variant (from its options)"),
])
def test_a_name_that_would_be_a_path_is_one_line(toy, tmp_path, args, message):
    one_line(invoke("eval", *args, "--out", tmp_path / "out"), message)
    assert not (tmp_path.parent / "outside").exists()


@pytest.mark.parametrize("args, message", [
    (["--regimes", "full", "--full-learning-rates", "-1e-5"], "--full-learning-rates must be above 0, got -1e-05"),
    (["--regimes", "full", "--full-learning-rates", "nan"], "--full-learning-rates must be a finite number, got nan"),
    (["--regimes", "full", "--full-learning-rates", "inf"], "--full-learning-rates must be a finite number, got inf"),
    (["--regimes", "full", "--full-head-learning-rate", "-0.001"], "--full-head-learning-rate must be above 0"),
    (["--regimes", "head", "--unfreeze-top", "1", "--head-learning-rates", "-1e-3"], "--head-learning-rates must be above 0"),
    (["--regimes", "full", "--full-max-steps", "0"], "--full-max-steps must be 1 or more, got 0"),
    (["--regimes", "full", "--full-warmup-ratio", "-0.5"], "--full-warmup-ratio must be 0 or more"),
    (["--regimes", "full", "--batch-size", "0"], "--batch-size must be 1 or more, got 0"),
    (["--regimes", "few-shot", "--demo-sets", "0"], "--demo-sets must be 1 or more, got 0"),
    (["--regimes", "few-shot", "--demos", "-2"], "--demos must be 1 or more, got -2"),
    (["--regimes", "head", "--c-grid", "0,1"], "--c-grid must be above 0, got 0.0"),
    (["--regimes", "head", "--select-metric", "speed"], "unknown --select-metric 'speed' (known: accuracy, macro_f1"),
])
def test_a_number_out_of_its_declared_range_is_one_line(toy, tmp_path, args, message):
    one_line(invoke(*RUN[:5], "--k", "2", *args, "--out", tmp_path / "out"), message)


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "--threads"), (["--cpus-per-cell", "0"], "--cpus-per-cell"), (["--limit", "-3"], "--limit"),
])
def test_run_options_out_of_range_are_refused(toy, tmp_path, args, message):
    result = invoke(*RUN, *args, "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("rows, message", [
    (['{"id": 7, "text": "a", "label": 0}', '{"id": 7, "text": "b", "label": 1}'], "has the id '7' twice (rows 1 and 2"),
    (['{"text": "a", "label": 0}', '{"id": 0, "text": "b", "label": 1}'], "has the id '0' twice (rows 1 and 2"),
])
def test_test_ids_twice_are_one_line_naming_the_file_and_the_id(toy, tmp_path, rows, message):
    (toy / "data" / "toy" / "test.jsonl").write_text("\n".join(rows) + "\n")
    result = invoke(*RUN, "--out", tmp_path / "out")
    one_line(result, message)
    assert "test.jsonl" in result.output


@pytest.mark.parametrize("body, message", [
    ("{{ text | random }} It was", "uses 'random', whose output changes from run to run"),
    ("{{ lipsum(1) }} {{ text }}", "uses 'lipsum', whose output changes from run to run"),
    ("{{ [text.__class__] }} It was", "blocked by the sandbox"),
    ("{{ [text.missing] }} It was", "has no attribute 'missing'"),
    ("{{ text.format }} It was", "prints a function (format), not text"),
    ("{{ text | nosuchfilter }}", "No filter named 'nosuchfilter'"),
    ("{{ text * 3000000 }} It was", "characters, more than 64 per token of the model's 256-token context: refused"),
])
def test_a_template_that_renders_differently_or_enormously_is_one_line(toy, tmp_path, body, message):
    path = toy / "prompts" / "toy" / "cloze.jinja"
    header = path.read_text().split("#}")[0] + "#}\n"
    path.write_text(header + body + "\n")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), message)


def test_a_yaml_alias_bomb_and_an_oversized_task_file_are_one_line(toy, tmp_path):
    path = toy / "tasks" / "toy.yaml"
    original = path.read_text()
    path.write_text(original + 'x: &a ["lol", "lol"]\ny: &b [*a, *a, *a, *a]\nz: [*b, *b, *b, *b]\n')
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "an alias (*a) is not allowed here")
    path.write_text(original + "#" * 1_000_001 + "\n")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "a YAML file here is at most 1,000,000")


def test_few_shot_tries_only_the_demo_counts_that_fit_the_context(toy, tmp_path, loaded, caplog):
    long = " ".join(["the film was very good and the plot was great"] * 12)  # about 120 tokens per demo
    rows = [json.dumps({"text": f"{long} {i}", "label": i % 2}) for i in range(40)]
    (toy / "data" / "toy" / "train.jsonl").write_text("\n".join(rows) + "\n")
    with caplog.at_level("INFO"):
        result = invoke(*RUN[:5], "--regimes", "few-shot", "--k", "8", "--seeds", "13", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    cell = json.loads(next((tmp_path / "out").rglob("few-shot_k8_seed13.json")).read_text())
    chosen = cell["demos_selection"]
    assert chosen["not_tried"] and max(chosen["grid"]) < 8  # 2 classes x 8 x ~120 tokens overflow 256 positions
    assert "would not fit the 256-token context" in caplog.text


def test_threads_are_the_free_cores_never_more(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert models.free_cores() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= models.free_cores() <= len(__import__("os").sched_getaffinity(0))


def test_a_process_that_just_finished_does_not_take_a_core(monkeypatch, tmp_path):
    """The minute's load average still counts a finished process; the runnable count does not."""
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.90 1.20 0.80 1/180 4242\n")  # high load, nothing runnable but this process
    real = models.Path

    monkeypatch.setattr(models, "Path", lambda p: real(loadavg) if p == "/proc/loadavg" else real(p))
    assert models.busy_elsewhere(samples=2, interval=0) == 0
    loadavg.write_text("1.90 1.20 0.80 3/180 4242\n")  # two others runnable now
    assert models.busy_elsewhere(samples=2, interval=0) == 2
