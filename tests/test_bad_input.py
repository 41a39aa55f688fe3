"""The bad-input matrix: every input a new user can get wrong ends in one line naming the file, key or value, or
in a note while the rest goes on; never a traceback, never silence."""

import errno
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness.models
from harness import models
from harness.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"
RUN = ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "zero-shot", "--limit", "all"]


@pytest.fixture
def toy(tmp_path, monkeypatch, loaded):
    """A private copy of the toy task, its templates and data, which a case may break."""
    for part in ("tasks", "prompts", "data"):
        shutil.copytree(FIXTURES / part, tmp_path / part)
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(tmp_path / "tasks"))
    monkeypatch.setenv("HARNESS_PROMPTS_DIR", str(tmp_path / "prompts"))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return tmp_path


def one_line(result, message, code=2):
    """Exit `code`, no traceback, and `message` on the one line of error output."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, AttributeError,
                                                                                   TypeError, ValueError))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_rows(toy, split, text):
    (toy / "data" / "toy" / f"{split}.jsonl").write_bytes(text if isinstance(text, bytes) else text.encode())


# --- data rows and files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('["very good", 1]\n', "test.jsonl: line 1 must be one JSON object per line, got list"),
    ('"very good"\n', "test.jsonl: line 1 must be one JSON object per line, got str"),
    ('[{"text": "a", "label": 0}, {"text": "b", "label": 1}]\n', "line 1 must be one JSON object per line, got list"),
    (b'{"text": "caf\xe9", "label": 0}\n', "test.jsonl: not UTF-8 text"),
    ('{"text": null, "label": 0}\n', "input field 'text' must be text, got None"),
    ('{"text": ["a"], "label": 0}\n', "input field 'text' must be text"),
    ('{"text": "a", "label": 5}\n', "label 5 is outside label_names"),
    ("{not json\n", "line 1 is not valid JSON"),
])
def test_bad_rows(toy, tmp_path, text, message):
    write_rows(toy, "test", text)
    one_line(invoke(*RUN, "--out", tmp_path / "out"), message)


def test_missing_local_data_file_names_the_path_as_written_and_resolved(toy, tmp_path):
    (toy / "data" / "toy" / "test.jsonl").unlink()
    one_line(invoke(*RUN, "--out", tmp_path / "out"),
             f"data file '../data/toy/test.jsonl' of split 'test' does not exist ({toy / 'data' / 'toy' / 'test.jsonl'})")


def test_data_dir_that_does_not_exist(toy, tmp_path):
    one_line(invoke(*RUN, "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out"),
             f"data folder '{tmp_path / 'nowhere'}' (--data-dir or $HARNESS_DATA_DIR) does not exist")


def test_data_dir_lacking_a_split_names_the_file_and_never_tries_the_hub(toy, tmp_path):
    mirror = tmp_path / "mirror" / "toy"
    mirror.mkdir(parents=True)
    shutil.copy(FIXTURES / "data" / "toy" / "train.jsonl", mirror)
    started = time.perf_counter()
    one_line(invoke(*RUN, "--data-dir", tmp_path / "mirror", "--out", tmp_path / "out"),
             f"{mirror / 'test.jsonl'}: no such file")
    assert time.perf_counter() - started < 20  # no hub retries


# --- task files -----------------------------------------------------------------------------------------------------
TOY = (FIXTURES / "tasks" / "toy.yaml").read_text()


@pytest.mark.parametrize("text, message", [
    (TOY + "version: 2\n", "duplicate key 'version'"),
    (TOY.encode("utf-8") + b"# caf\xe9\n", "toy.yaml: not UTF-8 text"),
    (TOY + "extra: 1\n", "unknown key 'extra'"),
    (TOY.replace("version: 1", "version: [1"), "malformed YAML"),
    ("- a\n- b\n", "a task file must be a mapping of keys"),
])
def test_bad_task_files(toy, tmp_path, text, message):
    (toy / "tasks" / "toy.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    one_line(invoke(*RUN, "--out", tmp_path / "out"), message)
    validated = invoke("validate")
    assert validated.exit_code == 1 and "Traceback" not in validated.output and message in validated.output


def test_tasks_dir_that_does_not_exist(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(tmp_path / "nowhere"))
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "tasks folder")
    one_line(invoke("tasks"), "does not exist")


def test_a_task_found_twice_names_both_files(toy, tmp_path):
    shutil.copy(toy / "tasks" / "toy.yaml", tmp_path / "toy.yaml")
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(toy / "tasks" / "toy.yaml", other / "toy.yaml")
    result = invoke("eval", "--tasks-dir", other, *RUN[1:], "--out", tmp_path / "out")
    one_line(result, "'toy.yaml' is found twice")
    assert str(other / "toy.yaml") in result.output and str(toy / "tasks" / "toy.yaml") in result.output


def test_no_task_at_all(toy, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(empty))
    monkeypatch.setattr(harness.catalog, "shipped", lambda kind: tmp_path / "no-shipped" / kind)
    one_line(invoke("tasks"), "no task files (*.yaml)")
    one_line(invoke("validate"), "no task files (*.yaml)")


# --- templates ------------------------------------------------------------------------------------------------------
HEADER = "{#\nverbalizers: {negative: terrible, positive: great}\n#}\n"


@pytest.mark.parametrize("body, message", [
    ("{{ 1 / 0 }} {{ text }}", "fails while rendering example"),
    ("{% include 'other.jinja' %}{{ text }}", "fails while rendering example"),
    ("{{ text.__class__.__mro__ }}", "blocked by the sandbox"),
])
def test_templates_that_fail_while_rendering(toy, tmp_path, body, message):
    (toy / "prompts" / "toy" / "cloze.jinja").write_text(HEADER + body + "\n")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), message)
    validated = invoke("validate")
    assert validated.exit_code == 1 and message in validated.output and "Traceback" not in validated.output


@pytest.mark.parametrize("header, message", [
    ("{#\nverbalizers: {negative: good, positive: good}\n#}\n", "labels negative and positive share the verbalizer"),
    ("{#\nverbalizers: {negative: a, positive: b}\nverbalizers: {negative: c, positive: d}\n#}\n",
     "duplicate key 'verbalizers'"),
    ("{#\nverbalizers: [a, b]\n#}\n", "header key 'verbalizers' must be a dict"),
])
def test_bad_template_headers(toy, tmp_path, header, message):
    (toy / "prompts" / "toy" / "cloze.jinja").write_text(header + "{{ text }} it was\n")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), message)


# --- flags ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--tasks", ""], "--tasks names nothing"),
    (["--regimes", ""], "--regimes names nothing"),
    (["--templates", ""], "--templates names no template"),
    (["--seeds", "13,13", "--regimes", "few-shot"], "--seeds names 13 more than once"),
    (["--k", "2,2", "--regimes", "few-shot"], "--k names 2 more than once"),
    (["--regimes", "zero-shot,zero-shot"], "--regimes names zero-shot more than once"),
    (["--k", "-5", "--regimes", "few-shot"], "--k must be comma-separated positive integers or 'all'"),
    (["--k", "-5", "--regimes", "head"], "--k must be comma-separated positive integers or 'all'"),
    (["--k", "-1", "--regimes", "head"], "--k must be comma-separated positive integers or 'all'"),
])
def test_bad_flags(toy, tmp_path, args, message):
    result = invoke("eval", "--tasks", "toy", "--templates", "cloze", *args, "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# --- output folders -------------------------------------------------------------------------------------------------
def test_out_is_a_file(toy, tmp_path):
    (tmp_path / "out").write_text("")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "is a file, not a folder")


@pytest.mark.parametrize("code, words", [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left")])
def test_unwritable_or_full_out_is_one_line(toy, tmp_path, monkeypatch, code, words):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(code, words)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    one_line(invoke(*RUN, "--out", tmp_path / "out"), f"cannot write {tmp_path / 'out'}")


def test_a_result_file_that_is_a_json_list(toy, tmp_path):
    assert invoke(*RUN, "--out", tmp_path / "out").exit_code == 0
    next((tmp_path / "out").rglob("zero-shot_k0.json")).write_text("[1, 2]")
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "unreadable result file (not a harness result file)")


def test_summary_has_a_row_per_k_and_covers_the_whole_folder(toy, tmp_path):
    out = tmp_path / "out"
    for k in ("2", "3"):
        result = invoke("eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "few-shot", "--k", k,
                        "--seeds", "13", "--out", out)
        assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    assert "| toy | few-shot | 2 |" in summary and "| toy | few-shot | 3 |" in summary


def test_a_cell_locked_by_another_process_is_left_to_it(toy, tmp_path):
    import fcntl

    out = tmp_path / "out"
    lock = out / "smollm2-135m" / "toy" / "cloze" / ".zero-shot_k0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as handle:
        handle.write("4242")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
        result = invoke(*RUN, "--out", out)
    assert result.exit_code == 0 and "being computed by pid 4242" in result.output
    assert "1 being computed by another process" in result.output
    assert not list(out.rglob("zero-shot_k0.json"))
    again = invoke(*RUN, "--out", out)  # the lock is gone with its holder
    assert "1 cells computed" in again.output


def test_prompting_out_of_memory_is_one_line(toy, tmp_path, monkeypatch):
    import harness.regimes.prompting as prompting

    def boom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(prompting, "predict_prompting", boom)
    one_line(invoke(*RUN, "--out", tmp_path / "out"), "ran out of memory: try a smaller --batch-size")


# --- leaderboard ----------------------------------------------------------------------------------------------------
@pytest.fixture
def run_dir(toy, tmp_path):
    out = tmp_path / "runs"
    result = invoke("eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "zero-shot,few-shot", "--k", "2",
                    "--seeds", "13,21", "--limit", "all", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, note", [
    (lambda d: d["cell"].pop("regime"), "field cell.regime: Field required"),
    (lambda d: d.update(metrics="0.5"), "field metrics: Input should be a valid dictionary (got '0.5')"),
    (lambda d: d.update(cost=[1, 2]), "field cost: Input should be a valid dictionary"),
    (lambda d: d.update(settings={"min_steps": "0"}), "field settings.min_steps: Input should be a valid integer"),
    (lambda d: d.update(demos_selection={"dev_accuracy": "x"}), "field demos_selection.dev_accuracy:"),
])
def test_leaderboard_reports_malformed_cells_and_builds_the_rest(run_dir, tmp_path, change, note):
    _edit(next(run_dir.rglob("few-shot_k2_seed21.json")), change)
    result = invoke("leaderboard", run_dir, "--out", tmp_path / "lb", "--k", "2")
    assert result.exit_code == 0 and note in result.output and "Traceback" not in result.output
    assert (tmp_path / "lb" / "README.md").is_file()


@pytest.mark.parametrize("cut, note", [
    (lambda text: text[: len(text) // 2 + 3], "unreadable per-example file"),
    (lambda text: "".join(text.splitlines(keepends=True)[:3]), "holds 3 rows for n = 7"),
])
def test_leaderboard_notes_a_per_example_file_that_does_not_match(run_dir, tmp_path, cut, note):
    path = next(run_dir.rglob("few-shot_k2_seed21.jsonl"))
    path.write_text(cut(path.read_text()))
    result = invoke("leaderboard", run_dir, "--out", tmp_path / "lb", "--k", "2")
    assert result.exit_code == 0 and note in result.output and "Traceback" not in result.output


def test_leaderboard_out_is_a_file(run_dir, tmp_path):
    (tmp_path / "lb").write_text("")
    one_line(invoke("leaderboard", run_dir, "--out", tmp_path / "lb"), "is a file, not a folder")


# --- the model cache ------------------------------------------------------------------------------------------------
def test_two_first_runs_convert_the_model_once(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "locate_embedded_gguf", lambda alias=models.EMBEDDED_ALIAS: gguf)
    conversions = []

    def slow_convert(source, folder, identity):
        conversions.append(folder)
        time.sleep(0.5)  # the other run arrives meanwhile
        folder.mkdir(parents=True)
        save_file({"weight": torch.zeros(2)}, str(folder / "model.safetensors"))
        (folder / "harness-identity.json").write_text(json.dumps(identity))

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(models.ensure_embedded_converted())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(conversions) == 1 and len(results) == 2 and results[0] == results[1]
