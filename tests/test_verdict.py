"""Seed-aware statistics and the verdict, on tiny cases computed by brute force and on synthetic result files."""

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.leaderboard.collect import collect
from harness.leaderboard.stats import hierarchical_bootstrap, percentile_interval, seed_level_p_value
from harness.leaderboard.verdict import compare, model_lines, verdict_lines
from test_leaderboard import GOLD, HALF, WRONG2, write_cell


def test_hierarchical_bootstrap_matches_the_enumerated_distribution():
    scores = np.array([[1.0, 0.0], [1.0, 1.0]])  # 2 seeds x 2 examples
    exact = []
    for seeds in itertools.product(range(2), repeat=2):  # seeds with replacement
        for examples in itertools.product(itertools.product(range(2), repeat=2), repeat=2):  # examples within each
            exact.append(np.mean([scores[s, list(e)].mean() for s, e in zip(seeds, examples)]))
    exact = np.array(exact)  # 64 equally likely resamples
    drawn = hierarchical_bootstrap(scores, resamples=40000, seed=1)[:, 0]
    assert drawn.mean() == pytest.approx(exact.mean(), abs=0.005)
    assert drawn.var() == pytest.approx(exact.var(), abs=0.003)
    for value in np.unique(exact):
        assert np.mean(drawn == value) == pytest.approx(np.mean(exact == value), abs=0.01)
    assert percentile_interval(drawn) == (np.percentile(exact, 2.5, method="inverted_cdf"),
                                          np.percentile(exact, 97.5, method="inverted_cdf"))


def test_regimes_are_resampled_with_the_same_draws():
    a = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    both = hierarchical_bootstrap(np.stack([a, a]), resamples=500)
    assert np.array_equal(both[:, 0], both[:, 1])  # a difference of identical regimes is exactly 0


def test_seed_level_test_enumerates_sign_flips_of_seed_differences():
    assert seed_level_p_value([0.8, 0.7, 0.9, 0.75, 0.85], [0.6, 0.6, 0.6, 0.6, 0.6]) == pytest.approx(2 / 32)
    assert seed_level_p_value([0.7, 0.5], [0.6, 0.6]) == pytest.approx(1.0)


WRONG1 = [1 - g if i == 0 else g for i, g in enumerate(GOLD)]  # 90 %
WRONG3 = [1 - g if i < 3 else g for i, g in enumerate(GOLD)]  # 70 %
WRONG5 = [1 - g if i < 5 else g for i, g in enumerate(GOLD)]  # 50 %


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_cell(root, "t1", "a", "zero-shot", 0, None, WRONG5)
    for seed in (13, 21, 42):
        write_cell(root, "t1", "a", "head", 4, seed, GOLD if seed != 42 else WRONG1)
        write_cell(root, "t1", "a", "full", 4, seed, WRONG1 if seed != 21 else GOLD)
        write_cell(root, "t1", "a", "few-shot", 4, seed, WRONG5)
    return root


def test_compare_marks_ties_by_the_interval_and_gives_the_probability_of_being_best(runs):
    cells = collect([runs]).cells
    c = compare(cells, "t1", 4)
    assert c.best == "head" and c.seeds == [13, 21, 42] and c.examples == 10
    assert c.accuracy["head"][0] == pytest.approx(29 / 30)
    assert c.tied("full") and not c.tied("few-shot") and not c.tied("zero-shot")  # zero-shot repeats its one run
    assert c.difference["few-shot"][2] < 0
    assert sum(c.probability_best.values()) == pytest.approx(1.0) and c.probability_best["head"] > 0.5


def test_a_regime_on_other_seeds_is_left_out_and_said(runs):
    write_cell(runs, "t1", "a", "lora", 4, 99, GOLD)
    c = compare(collect([runs]).cells, "t1", 4)
    assert "lora" not in c.regimes and "lora" in c.left_out


def test_ten_seed_and_five_seed_regimes_meet_on_the_shared_seeds_and_a_one_seed_run_is_left_out(tmp_path):
    """Prompting and the probe run 10 seeds, the whole-model regimes 5: the comparison uses the 5 they share; a
    regime that ran one seed is left out (not every regime cut to it), and a required one makes it incomplete."""
    root, seeds = tmp_path / "runs", [13, 21, 42, 87, 100, 3, 5, 8, 34, 55]
    for seed in seeds:
        write_cell(root, "t3", "a", "head", 4, seed, WRONG1)
        write_cell(root, "t3", "a", "few-shot", 4, seed, WRONG3)
    for seed in seeds[:5]:
        write_cell(root, "t3", "a", "full", 4, seed, GOLD)
    write_cell(root, "t3", "a", "lora", 4, 13, GOLD)
    cells = collect([root]).cells
    c = compare(cells, "t3", 4)
    assert c.seeds == sorted(seeds[:5]) and c.regimes == ["few-shot", "head", "full"] and "lora" in c.left_out
    (line,) = verdict_lines(cells, [4], required=["lora", "prompt-ft"])
    assert "**incomplete**: prompt-ft did not run here; lora ran on other or too few seeds" in line
    assert line.startswith("**t3, k = 4** (5 seeds, 10 test examples)") and "Not compared: lora (seeds [13]" in line


def test_verdict_sentences_and_cli(runs):
    cells = collect([runs]).cells
    (line,) = verdict_lines(cells, [4])
    assert line.startswith("**t1, k = 4** (3 seeds, 10 test examples): **tie — pick the cheaper**: head, full are "
                           "not distinguishable; the cheapest of them is **head**")
    assert "the best mean is head, 96.7 %" in line and "+3.3 points over the runner-up, full" in line
    assert "Holm-corrected p =" in line and "over 3 comparisons" in line and "Out of sample" in line
    result = CliRunner().invoke(cli, ["verdict", str(runs), "--budget", "4"])
    assert result.exit_code == 0 and "tie — pick the cheaper" in result.output
    cheap = CliRunner().invoke(cli, ["verdict", str(runs), "--budget", "4", "--max-cost", "50"])
    assert cheap.exit_code == 0 and "No task has two regimes" in cheap.output  # every regime costs 100 + 1000 x 10


def test_two_regimes_with_equal_predictions_are_zero_points_apart_not_minus_zero(runs):
    for seed in (13, 21, 42):
        for regime in ("head", "full"):
            write_cell(runs, "t3", "a", regime, 4, seed, WRONG2)
    lines = {line.split(",")[0]: line for line in verdict_lines(collect([runs]).cells, [4])}
    assert "+0.0 points over the runner-up" in lines["**t3"] and "-0.0" not in lines["**t3"]


def test_the_verdict_says_whether_the_choice_depends_on_the_model(runs):
    for seed in (13, 21, 42):  # a second model where few-shot beats head; it ran no full
        write_cell(runs, "t1", "a", "head", 4, seed, HALF, model="other")
        write_cell(runs, "t1", "a", "few-shot", 4, seed, WRONG2, model="other")
    cells = collect([runs]).cells
    (line,) = model_lines(cells, 4)
    assert line.startswith("**t1, k = 4**, among the regimes every model ran (few-shot, head")
    assert "full" not in line and "other: **few-shot** (80.0 %)" in line and "tiny: **head**" in line
    assert line.endswith("the choice depends on the model.")
    result = CliRunner().invoke(cli, ["verdict", str(runs), "--budget", "4"])
    assert result.exit_code == 0 and "# across models" in result.output and "depends on the model" in result.output


def test_a_verdict_over_an_incomplete_set_of_regimes_recommends_none(runs):
    for seed in (13, 21, 42):  # another task, where full did not run
        write_cell(runs, "t2", "a", "head", 4, seed, GOLD)
        write_cell(runs, "t2", "a", "few-shot", 4, seed, WRONG5)
    lines = {line.split(",")[0]: line for line in verdict_lines(collect([runs]).cells, [4])}
    assert "**incomplete**: zero-shot, full did not run here, so no regime is recommended" in lines["**t2"]
    assert "incomplete" not in lines["**t1"]


def test_a_regime_that_chose_among_fewer_templates_makes_the_verdict_incomplete(runs):
    """The other regimes chose each seed's template among two; full only had `a` on seed 21: not like for like."""
    write_cell(runs, "t1", "b", "zero-shot", 0, None, WRONG5)
    for seed in (13, 21, 42):
        write_cell(runs, "t1", "b", "head", 4, seed, WRONG3)
        write_cell(runs, "t1", "b", "few-shot", 4, seed, WRONG5)
        if seed != 21:
            write_cell(runs, "t1", "b", "full", 4, seed, WRONG3)
    (line,) = verdict_lines(collect([runs]).cells, [4])
    assert "**incomplete**: full ran with fewer of the task's templates, so no regime is recommended" in line
    write_cell(runs, "t1", "b", "full", 4, 21, WRONG3)
    (line,) = verdict_lines(collect([runs]).cells, [4])
    assert "incomplete" not in line


def test_a_required_regime_that_ran_nowhere_makes_every_verdict_incomplete(runs, tmp_path):
    """Runs holding only the cheap regimes must not crown one of them: --require names what a verdict needs."""
    cells = collect([runs]).cells
    (line,) = verdict_lines(cells, [4], required=["head", "lora"])
    assert "**incomplete**: lora did not run here" in line
    result = CliRunner().invoke(cli, ["leaderboard", str(runs), "--out", str(tmp_path / "page"), "--k", "4",
                                      "--require", "lora,prompt-ft"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "README.md").read_text()
    assert "**incomplete**: prompt-ft, lora did not run here" in page and "every one of lora, prompt-ft" in page
    bad = CliRunner().invoke(cli, ["leaderboard", str(runs), "--out", str(tmp_path / "bad"), "--require", "lorra"])
    assert bad.exit_code != 0 and "unknown regime 'lorra'" in bad.output and "Traceback" not in bad.output


def _crossed(rng, seeds, items, mean, seed_sd, item_sd, noise_sd):
    return (mean + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, item_sd, (1, items))
            + rng.normal(0, noise_sd, (seeds, items)))


@pytest.mark.parametrize("seed_sd, item_sd", [(0.03, 0.3), (0.1, 0.05)])
def test_crossed_intervals_cover_95_percent_where_the_nested_bootstrap_does_not(seed_sd, item_sd):
    """A known crossed design (5 seeds x 200 items, a seed effect, an item effect every seed shares, noise): the
    crossed t interval covers the true mean about 95 % of the time whichever effect dominates; the nested bootstrap
    (items resampled within each seed) loses the shared item effect and covers far less when it dominates."""
    from harness.leaderboard.stats import crossed_interval

    rng = np.random.default_rng(7)
    crossed = nested = 0
    trials = 300
    for _ in range(trials):
        d = _crossed(rng, 5, 200, 0.02, seed_sd, item_sd, 0.3)
        _, low, high, _ = crossed_interval(d)
        crossed += low <= 0.02 <= high
        low, high = percentile_interval(hierarchical_bootstrap(d, resamples=300, seed=int(rng.integers(1 << 30)))[:, 0])
        nested += low <= 0.02 <= high
    assert 0.92 <= crossed / trials <= 0.99
    if item_sd > seed_sd:
        assert nested / trials < 0.88


def test_holm_adjusts_step_down():
    from harness.leaderboard.stats import holm

    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.5}) == {"a": 0.5} and holm({"a": 0.4, "b": 0.6})["b"] == 0.8


def test_the_verdict_compares_the_best_and_runner_up_at_an_equal_search(runs):
    import json

    for path in runs.rglob("head_k4_seed*.json"):  # head searched 4 values of C, full 2 learning rates x 1 check
        data = json.loads(path.read_text())
        data["selection"] = {"grid": [{"C": c, "dev_accuracy": a} for c, a in ((0.1, 0.5), (1, 0.6), (10, 0.9), (100, 0.7))]}
        path.write_text(json.dumps(data))
    for path in runs.rglob("full_k4_seed*.json"):
        data = json.loads(path.read_text())
        data["selection"] = {"runs": [{"learning_rate": lr, "history": [{"step": 8, "dev_accuracy": a}]}
                                      for lr, a in ((1e-5, 0.6), (1e-4, 0.8))]}
        path.write_text(json.dumps(data))
    (line,) = verdict_lines(collect([runs]).cells, [4])
    # head: E[max of 2 draws from .5 .6 .7 .9] = sum v_i ((i/4)^2 - ((i-1)/4)^2) = 0.75625; full: (.6 + 3 x .8) / 4
    assert "At an equal search of 2 configurations (they searched 4 and 2)" in line
    assert "75.6 % for head and 75.0 % for full" in line
