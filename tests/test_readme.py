"""The README's "Add a regime" and "Add a metric" examples run as written: each is executed here and goes through
harness eval (and the leaderboard)."""

import json
import re
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import harness.models
from harness import metrics, regimes
from harness.cli import cli

README = Path(__file__).parent.parent / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text().split(f"### {section}", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


@pytest.fixture
def runner(toy_env, loaded, monkeypatch):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return CliRunner()


def _namespace() -> dict[str, Any]:
    from harness.regimes.budget import CUDA_BUDGET, AdaptingBudget, Budget
    from harness.regimes.objectives import (ANSWER_SCORES, NewHead, head_learning_rate_setting, pooling_setting)
    from harness.regimes.options import redefault, resolve_settings, select_metric_setting, setting
    from harness.regimes.protocol import RegimeRun
    from harness.regimes.sources import Backbone
    from harness.regimes.trained import TrainedRegime
    from harness.types import Cost, Prediction

    return dict(locals(), dataclass=dataclass, Counter=Counter, Any=Any, METRICS=metrics.METRICS,
                Metric=metrics.Metric)


def test_the_ia3_example_is_the_ia3_module():
    """The composition shown is the shipped module's code, line for line."""
    source = (Path(regimes.__file__).parent / "ia3.py").read_text()
    lines = [line.strip() for line in _blocks("Add a regime")[0].splitlines() if line.strip()]
    assert lines and all(line in source for line in lines), [line for line in lines if line not in source]


def test_both_regime_examples_run_through_eval_and_the_leaderboard(runner, tmp_path, monkeypatch):
    ia3_block, majority_block = _blocks("Add a regime")
    namespace = _namespace()
    exec(ia3_block, namespace)
    exec(majority_block, namespace)
    monkeypatch.setitem(regimes.REGISTRY, "ia3", namespace["IA3"])
    monkeypatch.setitem(regimes.REGISTRY, "majority", namespace["Majority"]())
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "ia3,majority",
                                 "--k", "2", "--seeds", "13", "--ia3-max-steps", "2", "--out", str(tmp_path / "runs")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| toy | majority |" in result.output and "| toy | ia3 |" in result.output
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0 and "| majority |" in (tmp_path / "lb" / "README.md").read_text()


def test_the_metric_example_is_listed_shown_and_selects(runner, tmp_path, monkeypatch, toy_env):
    namespace = {**_namespace(), "METRICS": {}}
    exec(_blocks("Add a metric")[0], namespace)  # into a dict of its own, then into the table for this test only
    for name, metric in namespace["METRICS"].items():
        monkeypatch.setitem(metrics.METRICS, name, metric)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    spec = yaml.safe_load((toy_env / "tasks" / "toy.yaml").read_text())
    spec["metrics"] = ["accuracy", "macro_f1", "balanced_accuracy"]
    spec["dataset"]["data_files"] = {split: str((toy_env / "tasks" / path).resolve())
                                     for split, path in spec["dataset"]["data_files"].items()}
    (tasks / "toy.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(tasks))
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "head", "--k", "2",
                                 "--seeds", "13", "--select-metric", "balanced_accuracy",
                                 "--out", str(tmp_path / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "balanced_accuracy" in result.output.split("| task | regime |")[1].splitlines()[0]  # summary column
    cell = json.loads(next((tmp_path / "runs").rglob("head_k2_seed13.json")).read_text())
    assert "balanced_accuracy" in cell["metrics"] and "dev_score" in cell["selection"]
    assert cell["settings"]["select_metric"] == "balanced_accuracy"
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0 and "balanced accuracy %" in (tmp_path / "lb" / "README.md").read_text()
