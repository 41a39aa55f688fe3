"""`harness eval --config run.yaml`: every option of harness eval as a key, flags over it, the resolved run
written into the run folder (and read back)."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import harness.models
from harness.cli import cli


@pytest.fixture
def runner(toy_env, loaded, monkeypatch):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return CliRunner()


def _write(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def test_a_run_file_runs_flags_override_it_and_the_resolved_run_is_written(runner, tmp_path):
    run = _write(tmp_path / "run.yaml", {"tasks": ["toy"], "templates": "cloze", "regimes": ["head", "full"],
                                         "k": [2], "seeds": [13, 21], "limit": "all", "full-max-steps": 2,
                                         "out": str(tmp_path / "runs")})
    result = runner.invoke(cli, ["eval", "--config", str(run), "--seeds", "13"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cells = sorted(p.name for p in (tmp_path / "runs").rglob("*.json"))
    assert cells == ["full_k2_seed13.json", "head_k2_seed13.json"]  # --seeds 13 over the file's 13, 21
    full = json.loads(next((tmp_path / "runs").rglob("full_k2_seed13.json")).read_text())
    assert full["settings"]["max_steps"] == 2
    resolved = yaml.safe_load((tmp_path / "runs" / "run.yaml").read_text())
    assert resolved["seeds"] == [13] and resolved["full-max-steps"] == 2 and resolved["limit"] == "all"
    assert resolved["regimes"] == ["head", "full"] and resolved["k"] == [2]
    again = runner.invoke(cli, ["eval", "--config", str(tmp_path / "runs" / "run.yaml")], catch_exceptions=False)
    assert again.exit_code == 0 and "0 cells computed, 2 found on disk" in again.output


@pytest.mark.parametrize("content, message", [
    ({"taks": ["toy"]}, "unknown key 'taks' (known: "),
    ({"seeds": ["thirteen"]}, "key 'seeds': --seeds must be comma-separated ints, got 'thirteen'"),
    ({"k": {"a": 1}}, "key 'k' takes a value, got a mapping"),
    ({"regimes": [["head"]]}, "key 'regimes' takes a flat list"),
    ({"overwrite": "yes please"}, "key 'overwrite' takes true or false"),
    ({"full-max-steps": "many"}, "key 'full-max-steps': 'many' is not a valid integer"),
])
def test_a_bad_run_file_is_one_line_naming_the_file_and_the_key(runner, tmp_path, content, message):
    run = _write(tmp_path / "run.yaml", content)
    result = runner.invoke(cli, ["eval", "--config", str(run), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert str(run) in result.output and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_run_file_that_is_not_a_mapping_or_not_there_is_one_line(runner, tmp_path):
    (tmp_path / "list.yaml").write_text("- tasks\n")
    result = runner.invoke(cli, ["eval", "--config", str(tmp_path / "list.yaml")])
    assert result.exit_code == 2 and "a run file is a mapping of option names to values" in result.output
    result = runner.invoke(cli, ["eval", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "missing.yaml: no such file" in result.output


def test_regime_options_come_from_the_settings_with_their_help():
    """A regime adds no line to the CLI: its settings fields are the flags, their comments the help."""
    from harness.regimes import REGISTRY

    result = CliRunner().invoke(cli, ["eval", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--full-learning-rates", "--lora-rank", "--ia3-scoring", "--head-max-steps", "--device-defaults",
                 "--select-metric", "--calibration", "--demos", "--unfreeze-top", "--prompt-ft-max-steps"):
        assert flag in result.output, flag
    line = next(line for line in result.output.splitlines() if "--device-defaults" in line)
    assert all(name in line for name, r in REGISTRY.items() if "device_defaults" in r.settings.__dataclass_fields__)
