"""--sequence: one model trained task after task, its accuracy matrix and ACC, BWT, FWT (tiny model, toy tasks)."""

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


COMMON = ["--regimes", "prompt-ft", "--k", "1", "--seeds", "13,21", "--limit", "all", "--prompt-ft-max-steps", "2",
          "--prompt-ft-learning-rates", "1e-2"]


def test_a_sequence_trains_one_model_task_after_task_and_reports_the_matrix(runner, tmp_path):
    out = tmp_path / "runs"
    planned = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", *COMMON, "--out", str(out), "--dry-run"])
    assert "2 sequence runs to compute, 0 found on disk" in planned.output and not out.exists()
    result = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", *COMMON, "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| after \\ on | toy | toy_shift |" in result.output and "BWT" in result.output
    runs = [json.loads(p.read_text()) for p in sorted((out / "sequences").rglob("*.json"))]
    assert len(runs) == 2  # paired by seed
    single = tmp_path / "single"
    plain = runner.invoke(cli, ["eval", "--tasks", "toy", *COMMON, "--out", str(single)], catch_exceptions=False)
    assert plain.exit_code == 0, plain.output
    for run in runs:
        matrix = run["matrix"]
        assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
        # the diagonal is each step's own cell, as its regime predicted it
        assert [matrix[j][j] for j in range(2)] == pytest.approx(run["step_accuracy"])
        # the first step starts from the pretrained weights: it is the single-task cell
        cell = json.loads(next(single.rglob(f"prompt-ft_k1_seed{run['seed']}.json")).read_text())
        assert matrix[0][0] == pytest.approx(cell["metrics"]["accuracy"])
        assert run["bwt"] == pytest.approx(matrix[1][0] - matrix[0][0])
        assert run["fwt"] == pytest.approx(matrix[0][1] - run["untouched"][1])
        assert run["acc"] == pytest.approx((matrix[1][0] + matrix[1][1]) / 2)
    again = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", *COMMON, "--out", str(out)])
    assert "0 sequence runs computed, 2 on disk" in again.output  # resumable
    resolved = yaml.safe_load((out / "run.yaml").read_text())
    assert resolved["sequence"] == ["toy", "toy_shift"] and "tasks" not in resolved  # not the unused default
    other = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", *COMMON, "--prompt-ft-max-steps", "3",
                                "--out", str(out)])
    assert other.exit_code == 2 and "holds a sequence run of another configuration" in other.output
    # the leaderboard reads the sequence runs beside the cells (and never as cells)
    runner.invoke(cli, ["eval", "--tasks", "toy", *COMMON, "--out", str(out)], catch_exceptions=False)
    built = runner.invoke(cli, ["leaderboard", str(out), "--out", str(tmp_path / "lb"), "--k", "1"])
    assert built.exit_code == 0, built.output
    readme = (tmp_path / "lb" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| toy → toy_shift | prompt-ft | 1 | 2 |"))
    acc = sum(run["acc"] for run in runs) / 2
    assert row.split(" | ")[4].startswith(f"{100 * acc:.1f} ± ") and "Field required" not in readme


@pytest.mark.parametrize("regime", ["full", "lora"])
def test_a_new_head_per_task_is_read_on_the_later_weights(runner, tmp_path, regime):
    """Multi-head: each task keeps its head; after later tasks it reads the changed weights (lower triangle), no
    entry before its task (FWT undefined); the first step is the single-task cell; adapters merged between steps."""
    args = ["--regimes", regime, "--k", "1", "--seeds", "13", "--limit", "all", f"--{regime}-max-steps", "2",
            f"--{regime}-learning-rates", "1e-2"]
    out = tmp_path / "runs"
    result = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", *args, "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = json.loads(next((out / "sequences").rglob("*.json")).read_text())
    matrix = run["matrix"]
    assert matrix[0][1] is None and None not in matrix[1] and run["fwt"] is None
    assert [matrix[0][0], matrix[1][1]] == pytest.approx(run["step_accuracy"])
    assert run["bwt"] == pytest.approx(matrix[1][0] - matrix[0][0])
    single = runner.invoke(cli, ["eval", "--tasks", "toy", *args, "--out", str(tmp_path / "single")],
                           catch_exceptions=False)
    assert single.exit_code == 0, single.output
    cell = json.loads(next((tmp_path / "single").rglob(f"{regime}_k1_seed13.json")).read_text())
    assert matrix[0][0] == pytest.approx(cell["metrics"]["accuracy"])
    assert "FWT — (no head before its task)" in result.output


def test_a_sequence_refuses_a_regime_that_trains_no_backbone_in_one_line(runner, tmp_path):
    result = runner.invoke(cli, ["eval", "--sequence", "toy,toy_shift", "--regimes", "prompt-tuning", "--k", "1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--sequence: prompt-tuning cannot be trained task after task in one model" in result.output
    one = runner.invoke(cli, ["eval", "--sequence", "toy", "--regimes", "prompt-ft", "--k", "1", "--out", str(tmp_path)])
    assert "--sequence needs at least two tasks" in one.output


def test_a_mitigated_sequence_is_paired_with_the_unmitigated_one_by_seed():
    from harness.leaderboard.tables import continual_table

    def run(regime, seed, acc, bwt):
        return {"regime": regime, "k": 1, "seed": seed, "tasks": ["toy", "toy_shift"], "acc": acc, "bwt": bwt,
                "fwt": 0.0, "matrix": [[0.5, 0.5], [0.5, 0.5]], "untouched": [0.5, 0.5]}

    table = continual_table([run("prompt-ft", 13, 0.60, -0.10), run("prompt-ft", 21, 0.70, -0.20),
                             run("prompt-ft (ewc)", 13, 0.65, -0.05), run("prompt-ft (ewc)", 21, 0.72, -0.10),
                             run("prompt-ft (ewc)", 42, 0.99, 0.00)])  # seed 42 has no unmitigated partner
    rows = {row[1][0]: [cell for cell, _ in row] for row in table.rows}
    pairs, acc, bwt = (table.header.index(name) for name in ("pairs", "ACC Δ (95 % t)", "BWT Δ (95 % t)"))
    assert rows["prompt-ft"][pairs] == "—" and rows["prompt-ft"][acc] == "—"
    assert rows["prompt-ft (ewc)"][pairs] == "2"
    assert rows["prompt-ft (ewc)"][acc].startswith("+3.5 (") and rows["prompt-ft (ewc)"][bwt].startswith("+7.5 (")
