"""Equal tuning effort: the expected best of n random draws from a searched grid (Dodge et al. 2019), and the
leaderboard's table and plot of it from real eval output."""

import itertools

import pytest
from click.testing import CliRunner

import harness.models
from harness.cli import cli
from harness.leaderboard.stats import expected_max


def test_expected_max_equals_enumerating_every_draw():
    values = [0.5, 0.7, 0.6, 0.9]
    for n in (1, 2, 3):
        draws = list(itertools.product(values, repeat=n))
        assert expected_max(values, n) == pytest.approx(sum(max(d) for d in draws) / len(draws))
    assert expected_max(values, 1) == pytest.approx(sum(values) / 4) and expected_max(values, 200) == pytest.approx(0.9)


def test_the_leaderboard_shows_each_regimes_configurations_and_expected_best(toy_env, loaded, monkeypatch, tmp_path):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "few-shot,head,full",
                                 "--k", "4", "--seeds", "13,21", "--full-max-steps", "4", "--full-eval-every", "2",
                                 "--full-learning-rates", "1e-4,1e-3", "--c-grid", "0.1,1,10",
                                 "--out", str(tmp_path / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "4"])
    assert built.exit_code == 0, built.output
    table = (tmp_path / "lb" / "README.md").read_text().split("### Tuning effort (k = 4)")[1].split("###")[0]
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| toy |")}
    assert rows["full"].split("|")[3].strip() == "4"  # 2 learning rates x 2 dev checks, every one recorded
    assert rows["head"].split("|")[3].strip() == "3" and rows["few-shot"].split("|")[3].strip() == "3"
    for plot in ("expected_max_toy", "spectrum_toy", "forest_toy"):  # tuning effort, the spectrum, the forest plot
        assert (tmp_path / "lb" / "plots" / f"{plot}.png").is_file(), plot
