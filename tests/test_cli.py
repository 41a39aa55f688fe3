import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness.models
from harness.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def runner(toy_env, loaded, monkeypatch):
    calls = []

    def fake_load(name, trust_remote_code=False, **_):
        calls.append(name)
        return loaded

    monkeypatch.setattr(harness.models, "load_model", fake_load)
    cli_runner = CliRunner()
    cli_runner.model_loads = calls
    return cli_runner


def run(runner, *args):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_eval_writes_cells_and_summary_then_skips_them(runner, tmp_path):
    args = ["eval", "--tasks", "toy", "--regimes", "zero-shot,few-shot", "--k", "2", "--seeds", "13,21",
            "--out", str(tmp_path), "--limit", "all"]
    first = run(runner, *args)
    assert first.exit_code == 0, first.output
    cells = sorted(p.name for p in tmp_path.rglob("*.json"))
    # 2 templates x 2 seeds x (zero-shot + few-shot): zero-shot compares templates, so on each seed's dev set
    assert len(cells) == 8 and "few-shot_k2_seed21.json" in cells and "zero-shot_k2_seed21.json" in cells
    for seed in (13, 21):
        zero, few = (json.loads(next(tmp_path.rglob(f"{r}_k2_seed{seed}.json")).read_text()) for r in ("zero-shot", "few-shot"))
        assert zero["dev_ids"] == few["dev_ids"] and len(zero["dev_ids"]) == 4 and zero["demo_ids"] == []
    zero_13, zero_21 = (next(tmp_path.rglob(f"zero-shot_k2_seed{s}.jsonl")).read_text() for s in (13, 21))
    assert zero_13 == zero_21  # the test predictions do not depend on the dev set
    result = json.loads(next(tmp_path.rglob("few-shot_k2_seed13.json")).read_text())
    for key in ("metrics", "n", "effective_k", "wall_time_s", "tokens_processed", "task_version", "template_sha256",
                "model", "seeds", "harness", "config", "config_hash", "demo_ids"):
        assert key in result, key
    assert result["n"] == 7 and result["effective_k"]["requested"] == 2 and len(result["demo_ids"]) == 4
    assert "| toy | zero-shot |" in first.output and (tmp_path / "summary.md").is_file()
    rows = (next(tmp_path.rglob("few-shot_k2_seed13.jsonl"))).read_text().splitlines()
    assert len(rows) == 7 and {"id", "gold", "pred", "probs", "loglik"} <= set(json.loads(rows[0]))

    again = run(runner, *args)
    assert again.exit_code == 0 and "0 cells computed, 8 found on disk" in again.output
    assert runner.model_loads == ["smollm2-135m"]  # the rerun never loaded the model

    over = run(runner, *args, "--overwrite")
    assert "8 cells computed" in over.output


def test_same_seed_same_numbers(runner, tmp_path):
    for out in ("a", "b"):
        run(runner, "eval", "--tasks", "toy", "--regimes", "few-shot", "--k", "2", "--seeds", "13",
            "--templates", "cloze", "--out", str(tmp_path / out))
    a, b = (json.loads(next((tmp_path / o).rglob("*.json")).read_text()) for o in ("a", "b"))
    assert a["metrics"] == b["metrics"] and a["demo_ids"] == b["demo_ids"]


def test_changed_config_in_the_same_out_is_refused(runner, tmp_path):
    run(runner, "eval", "--tasks", "toy", "--regimes", "zero-shot", "--templates", "cloze", "--out", str(tmp_path), "--limit", "3")
    changed = runner.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "zero-shot", "--templates", "cloze", "--out", str(tmp_path),
                                  "--limit", "5"])
    assert changed.exit_code == 2 and "holds a result of another configuration" in changed.output


def _bad_task_dir(tmp_path, monkeypatch, text=None, rows=None):
    tasks = tmp_path / "tasks"
    shutil.copytree(FIXTURES / "tasks", tasks)
    if text is not None:
        (tasks / "toy.yaml").write_text(text)
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(tasks))
    if rows is not None:
        mirror = tmp_path / "mirror" / "toy"
        mirror.mkdir(parents=True)
        for split in ("train", "test"):
            (mirror / f"{split}.jsonl").write_text(rows)
        return ["--data-dir", str(tmp_path / "mirror")]
    return []


TOY = (FIXTURES / "tasks" / "toy.yaml").read_text()


@pytest.mark.parametrize(
    "args, setup, message",
    [
        (["--tasks", "nope"], None, "unknown task 'nope'"),
        (["--tasks", "toy", "--templates", "nope"], None, "unknown template 'nope' for task 'toy'"),
        (["--tasks", "toy", "--regimes", "few-shot,qlora"], None, "unknown regime 'qlora'"),
        (["--tasks", "toy", "--templates", "cloze", "--regimes", "few-shot", "--k", "9"], None,
         "k=9 per class plus a dev set of 9 needs 18 train examples of class 'negative', the train split has 12"),
        (["--tasks", "toy"], {"text": TOY + "extra: 1\n"}, "unknown key 'extra'"),
        (["--tasks", "toy"], {"text": TOY.replace("version: 1", "version: [1")}, "malformed YAML"),
        (["--tasks", "toy"], {"rows": '{"text": "x", "label": 5}\n'}, "label 5 is outside label_names"),
        (["--tasks", "toy"], {"rows": "\n"}, "split 'test' is empty"),
    ],
)
def test_bad_input_is_one_line_without_traceback(runner, tmp_path, monkeypatch, args, setup, message):
    extra = _bad_task_dir(tmp_path, monkeypatch, **setup) if setup else []
    result = runner.invoke(cli, ["eval", *args, *extra, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def _offline_cli(tmp_path, *args, env=None):
    """The CLI in a fresh process: the hub libraries read the offline switches when first imported."""
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HARNESS_TASKS_DIR": str(FIXTURES / "tasks"), "HARNESS_PROMPTS_DIR": str(FIXTURES / "prompts"),
               **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=environ, timeout=120)


def test_unreachable_hub_model_offline(tmp_path):
    result = _offline_cli(tmp_path, "eval", "--tasks", "toy", "--regimes", "zero-shot", "--templates", "cloze", "--model",
                          "no-such-org/no-such-model")
    assert result.returncode == 2 and "model 'no-such-org/no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_hub_dataset_offline(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "toy.yaml").write_text(TOY.replace(
        "data_files: {train: ../data/toy/train.jsonl, validation: ../data/toy/validation.jsonl, test: ../data/toy/test.jsonl}",
        "hub: no-such-org/no-such-dataset"))
    result = _offline_cli(tmp_path, "eval", "--tasks", "toy", env={"HARNESS_TASKS_DIR": str(tasks)})
    assert result.returncode == 2 and "cannot load dataset 'no-such-org/no-such-dataset'" in result.stderr
    assert "--data-dir" in result.stderr and "Traceback" not in result.stderr


def test_tasks_validate_and_render(runner):
    listed = run(runner, "tasks")
    assert "toy (v1): train 20, validation 4, test 7" in listed.output and "templates: cloze, plain" in listed.output
    valid = run(runner, "validate")
    assert valid.exit_code == 0 and "FAILED" not in valid.output
    rendered = run(runner, "prompts", "render", "toy", "--template", "plain", "--k", "1", "--seed", "13")
    text = rendered.output.split("\n---")[0]
    assert text.count("\n###\n") == 2 and text.endswith("sentiment :")
    assert "# positive: ' very good !'" in rendered.output


def test_validate_reports_a_broken_template(runner, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts"
    shutil.copytree(FIXTURES / "prompts", prompts)
    (prompts / "toy" / "broken.jinja").write_text("{#\nverbalizers: {negative: a, positive: b}\n#}\n{{ body }}\n")
    monkeypatch.setenv("HARNESS_PROMPTS_DIR", str(prompts))
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 1 and "FAILED" in result.output and "uses field 'body'" in result.output


def test_debug_shows_the_traceback(runner, tmp_path):
    from harness.errors import HarnessError

    plain = runner.invoke(cli, ["eval", "--tasks", "nope", "--out", str(tmp_path)])
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)  # one line, no exception escapes
    debug = runner.invoke(cli, ["--debug", "eval", "--tasks", "nope", "--out", str(tmp_path)])
    assert isinstance(debug.exception, HarnessError) and "unknown task 'nope'" in str(debug.exception)


def test_several_templates_give_prompting_cells_a_dev_score(runner, tmp_path):
    result = run(runner, "eval", "--tasks", "toy", "--regimes", "zero-shot,few-shot", "--k", "2", "--seeds", "13",
                 "--templates", "all", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    few = json.loads(next(tmp_path.rglob("cloze/few-shot_k2_seed13.json")).read_text())
    zero = json.loads(next(tmp_path.rglob("cloze/zero-shot_k2_seed13.json")).read_text())
    for cell in (few, zero):
        assert 0 <= cell["selection"]["dev_accuracy"] <= 1 and cell["dev_ids"]
    assert not set(few["dev_ids"]) & set(few["demo_ids"]) and len(few["dev_ids"]) == 4
