"""Leaderboard tests on synthetic result files: no model, no torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.leaderboard.build import build
from harness.leaderboard.collect import collect
from harness.leaderboard.render import latex, long_csv, markdown
from harness.leaderboard.stats import brier_score, expected_calibration_error, paired_p_value
from harness.leaderboard.tables import Table, _p_text, main_table, per_seed

GOLDEN = Path(__file__).parent / "golden" / "leaderboard"
GOLD = [0, 1, 0, 1, 0, 1, 0, 0, 1, 1]


def write_cell(root: Path, task: str, template: str, regime: str, k: int, seed, preds, dev=None, model="tiny",
               config_hash=None, created="2026-11-26T10:00:00+00:00", variant="", warnings=None):
    """One result JSON + JSONL in the runner's layout; preds are predicted labels for GOLD."""
    stem = (f"{regime}-{variant}" if variant else regime) + f"_k{k}" + ("" if seed is None else f"_seed{seed}")
    folder = root / model / task / template
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"test-{i}", "gold": g, "pred": p, "probs": [0.8, 0.2] if p == 0 else [0.3, 0.7]}
            for i, (g, p) in enumerate(zip(GOLD, preds))]
    (folder / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    accuracy = float(np.mean([g == p for g, p in zip(GOLD, preds)]))
    result = {
        "cell": {"task": task, "template": template, "regime": regime, "k": k, "seed": seed, "variant": variant},
        "status": "ok", "metrics": {"accuracy": accuracy}, "n": len(GOLD),
        "cost": {"trainable_parameters": 0 if regime in ("zero-shot", "few-shot") else 10,
                 "trainable_parameters_percent": 0.0, "train_wall_time_s": 1.0, "train_flops": 100.0,
                 "inference_flops_per_example": 10.0, "peak_rss_bytes": 2**30, "stored_bytes_per_task": 40},
        "config_hash": config_hash or f"{task}{template}{regime}{k}{seed}",
        "created_at": created, "device": "cpu", "harness": {"version": "0.1.0", "git_commit": "abc"},
        "invocation": {"command": f"harness eval --tasks {task}"}, "model": {"source": "test", "id": model},
    }
    if dev is not None:
        result["selection"] = {"dev_accuracy": dev}
    if warnings is not None:
        result["warnings"] = list(warnings)
    (folder / f"{stem}.json").write_text(json.dumps(result))


RIGHT = GOLD
WRONG2 = [1 - g if i < 2 else g for i, g in enumerate(GOLD)]  # 80 %
HALF = [0] * 10  # 50 %


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_cell(root, "t1", "a", "zero-shot", 0, None, HALF)
    for seed, preds in ((13, RIGHT), (21, WRONG2)):
        write_cell(root, "t1", "a", "few-shot", 16, seed, preds)
        write_cell(root, "t1", "a", "head", 16, seed, WRONG2)
    return root


def test_mean_std_bold_and_baselines(runs):
    table = main_table(collect([runs]).cells, 16)
    rows = {row[0][0]: row for row in table.rows}
    assert rows["few-shot"][1] == ("90.0 ± 14.1 (2)", True)  # sample std of 100 and 80
    assert rows["head"][1][0].startswith("80.0 ± 0.0 (2)")
    assert rows["zero-shot"][1][0].startswith("50.0 (1)")  # one run: no std to show
    assert rows["majority"][1][0] == "50.0" and rows["random"][1][0] == "50.0"
    assert any("p = " in note for note in table.notes)
    assert any("with 2 seeds no p is below 0.5" in note for note in table.notes)  # 2 / 2^2, from the seeds compared


def test_a_regime_on_other_seeds_is_never_bold_however_high(runs):
    write_cell(runs, "t1", "a", "lora", 16, 99, RIGHT)  # 100 % on a seed no other regime ran
    table = main_table(collect([runs]).cells, 16)
    rows = {row[0][0]: row for row in table.rows}
    assert rows["lora"][1] == ("100.0 (1)", False) and rows["few-shot"][1][1] is True
    assert any("lora is not compared" in note for note in table.notes)


def test_p_values_below_a_thousandth_are_shown_as_a_bound():
    assert _p_text(0.0001) == "p < 0.001" and _p_text(0.0928) == "p = 0.0928" and _p_text(0.001) == "p = 0.001"


def test_ties_are_marked_with_a_dagger(runs):
    table = main_table(collect([runs]).cells, 16)
    rows = {row[0][0]: row for row in table.rows}
    assert rows["head"][1][0].endswith("†")  # 2 of 20 pairs differ: not significant
    assert not rows["zero-shot"][1][0].endswith("†")  # 10 of 20 pairs differ: significant


def test_paired_test_matches_exact_sign_flip_enumeration():
    import itertools

    a = [1, 1, 1, 0, 1, 1, 1, 0]
    b = [0, 0, 1, 0, 1, 0, 1, 1]
    diff = np.array(a) - np.array(b)
    flips = [abs((diff * np.array(s)).mean()) >= abs(diff.mean()) - 1e-12 for s in itertools.product([1, -1], repeat=8)]
    assert paired_p_value(a, b) == pytest.approx(np.mean(flips))
    assert paired_p_value(a, a) == 1.0


def test_paired_test_agrees_with_scipy_permutation_test():
    from scipy import stats

    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 80)
    b = np.where(rng.random(80) < 0.8, a, 1 - a)
    b[:4] = 0
    a[:4] = 1  # a is a little better
    reference = stats.permutation_test((a - b,), np.mean, permutation_type="samples", vectorized=True,
                                       n_resamples=99999, random_state=0).pvalue
    assert 0.01 < reference < 0.5
    assert paired_p_value(a, b) == pytest.approx(reference, abs=0.02)


def test_ece_and_brier_on_hand_computed_cases():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    gold = np.array([0, 1, 1, 1])
    # bins: 0.9 -> bin 9 (acc 1, conf .9); 0.6 -> bin 6 (acc 0, conf .6); 0.7 -> bin 7 (acc 1); 0.8 -> bin 8 (acc 1)
    assert expected_calibration_error(probs, gold) == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)
    assert brier_score(probs, gold) == pytest.approx((0.02 + 0.72 + 0.18 + 0.08) / 4)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_dev_selected_template_per_seed(tmp_path):
    root = tmp_path / "runs"
    write_cell(root, "t1", "a", "few-shot", 16, 13, RIGHT, dev=0.9)
    write_cell(root, "t1", "b", "few-shot", 16, 13, HALF, dev=0.4)
    write_cell(root, "t1", "a", "few-shot", 16, 21, HALF, dev=0.2)
    write_cell(root, "t1", "b", "few-shot", 16, 21, WRONG2, dev=0.7)
    seeds = per_seed(collect([root]).cells).set_index("seed")
    assert seeds.loc[13, "templates"] == "a" and seeds.loc[21, "templates"] == "b"
    assert seeds.loc[21, "accuracy"] == pytest.approx(0.8)


def test_zero_shot_selects_its_template_on_each_seeds_dev_set(tmp_path):
    root = tmp_path / "runs"
    write_cell(root, "t1", "a", "zero-shot", 16, 13, RIGHT, dev=0.9)
    write_cell(root, "t1", "b", "zero-shot", 16, 13, HALF, dev=0.4)
    write_cell(root, "t1", "a", "zero-shot", 16, 21, RIGHT, dev=0.2)
    write_cell(root, "t1", "b", "zero-shot", 16, 21, HALF, dev=0.7)
    write_cell(root, "t1", "a", "zero-shot", 8, 13, HALF, dev=0.9)  # another k: not in the k = 16 table
    table = main_table(collect([root]).cells, 16)
    assert {row[0][0]: row for row in table.rows}["zero-shot"][1][0].startswith("75.0 ± 35.4 (2)")
    assert "the same k = 16 labelled examples per class" in table.notes[0] and "seed 0" not in table.notes[0]
    old = tmp_path / "old"  # harness 0.2: one unseeded cell per template, chosen on a seed-0 dev set
    write_cell(old, "t1", "a", "zero-shot", 0, None, RIGHT, dev=0.9)
    write_cell(old, "t1", "b", "zero-shot", 0, None, HALF, dev=0.4)
    assert "drawn with seed 0" in main_table(collect([old]).cells, 16).notes[0]


def test_edge_and_last_step_warnings_are_marked(tmp_path):
    from harness.leaderboard.tables import selection_table

    root = tmp_path / "runs"
    write_cell(root, "t1", "a", "full", 16, 13, RIGHT, warnings=["learning rate = 0.0001 is on the edge of the grid"])
    write_cell(root, "t1", "a", "full", 16, 21, RIGHT, warnings=["the best dev checkpoint is the last step (24 of 24)"])
    write_cell(root, "t1", "a", "head", 16, 13, HALF, warnings=[])
    write_cell(root, "t1", "a", "tfidf", 16, 13, HALF)  # an older cell: it never checked its selection
    cells = collect([root]).cells
    rows = {row[0][0]: row for row in main_table(cells, 16).rows}
    assert rows["full"][1][0].endswith(" §") and "§" not in rows["head"][1][0]
    checks = {row[1][0]: row for row in selection_table(cells, 16).rows}
    assert checks["full"][2] == ("1 of 2", True) and checks["full"][3] == ("1 of 2", True)
    assert checks["head"][2] == ("0 of 1", False) and checks["tfidf"][2] == ("not recorded", False)


def test_a_mitigation_strength_on_its_grids_edge_is_marked_in_cells_that_wrote_no_warning(tmp_path):
    from harness.leaderboard.tables import selection_table

    root = tmp_path / "runs"
    for seed, strength in ((13, 1.0), (21, 0.1), (42, 0.01)):
        write_cell(root, "t1", "a", "full", 16, seed, RIGHT, variant="ewc", warnings=[])
        path = root / "tiny" / "t1" / "a" / f"full-ewc_k16_seed{seed}.json"
        cell = json.loads(path.read_text())  # as harness 0.5 wrote it: the strength's edge not among the warnings
        cell.update(settings={"mitigation": "ewc", "mitigation_strengths": [0.01, 0.1, 1.0]},
                    selection={"dev_accuracy": 0.9, "chosen": {"learning_rate": 4e-5, "mitigation_strength": strength}})
        path.write_text(json.dumps(cell))
    checks = {row[1][0]: row for row in selection_table(collect([root]).cells, 16).rows}
    assert checks["full (ewc)"][2] == ("2 of 3", True)  # 1 and 0.01 are the edges, 0.1 is not


def test_transfer_gain_is_paired_by_seed_and_negative_transfer_marked(tmp_path):
    from harness.leaderboard.tables import transfer_table

    root = tmp_path / "runs"
    for seed, scratch, head in ((13, HALF, RIGHT), (21, HALF, WRONG2), (42, RIGHT, HALF), (87, RIGHT, HALF)):
        write_cell(root, "t1", "a", "scratch", 16, seed, scratch)
        write_cell(root, "t1", "a", "head", 16, seed, head)
        write_cell(root, "t1", "a", "full", 16, seed, HALF)
    write_cell(root, "t1", "a", "zero-shot", 0, None, WRONG2)
    rows = {row[2][0]: row for row in transfer_table(collect([root]).cells).rows}
    # head − scratch per seed: +50, +30, −50, −50 -> mean −5
    assert rows["head"][3] == ("-5.0", False) and rows["head"][5] == ("4", False)
    # full − scratch: 0, 0, −50, −50: mean −25, the CI [−50, 0] reaches 0, so no mark
    assert rows["full"][3] == ("-25.0", False)
    assert rows["zero-shot"][3][0] == "+5.0"  # 80 % against the mean of 50, 50, 100, 100
    assert rows["zero-shot"][5] == ("1 cell vs 4 (unpaired)", False)  # one run is not four paired seeds
    assert set(rows) == {"zero-shot", "head", "full"}
    root2 = tmp_path / "neg"
    for seed in (13, 21, 42):
        write_cell(root2, "t1", "a", "scratch", 16, seed, RIGHT)
        write_cell(root2, "t1", "a", "full", 16, seed, HALF if seed != 42 else WRONG2)
    neg = {row[2][0]: row for row in transfer_table(collect([root2]).cells).rows}
    assert neg["full"][3] == ("-40.0 ▼", True)


def test_freezing_depth_table_finds_the_fewest_blocks_within_a_point(tmp_path):
    from harness.leaderboard.tables import freezing_table

    root = tmp_path / "runs"
    for seed in (13, 21):
        write_cell(root, "t1", "a", "head", 16, seed, HALF)
        write_cell(root, "t1", "a", "head", 16, seed, WRONG2, variant="top1")
        write_cell(root, "t1", "a", "head", 16, seed, RIGHT, variant="top2")
        write_cell(root, "t1", "a", "head", 16, seed, RIGHT, variant="mean-pool")  # not a depth
        write_cell(root, "t1", "a", "full", 16, seed, RIGHT)
    rows = freezing_table(collect([root]).cells, 16).rows
    assert [(r[1][0], r[2][0], r[4][0]) for r in rows] == [
        ("head", "0", "50.0"), ("head (top1)", "1", "80.0"), ("head (top2)", "2", "100.0"), ("full", "all", "100.0")]
    assert [r[1][0] for r in rows if r[1][1]] == ["head (top2)"]  # N*: full is no better


def test_merge_and_dedup(runs, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(runs, other)
    assert len(collect([runs, other]).cells) == len(collect([runs]).cells) == 5
    write_cell(other, "t1", "a", "head", 16, 13, RIGHT, config_hash="different", created="2026-11-27T00:00:00+00:00")
    merged = collect([runs, other])
    assert len(merged.cells) == 5 and any("conflicting results" in p for p in merged.problems)
    kept = merged.cells[(merged.cells["regime"] == "head") & (merged.cells["seed"] == 13)]
    assert kept["metric_accuracy"].iloc[0] == 1.0


def test_gzipped_predictions_are_read(runs, tmp_path):
    import gzip

    for path in runs.rglob("*.jsonl"):
        path.with_suffix(".jsonl.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    collected = collect([runs])
    assert not collected.problems and all(p.endswith(".jsonl.gz") for p in collected.cells["predictions"])
    assert main_table(collected.cells, 16).rows[1][1] == ("90.0 ± 14.1 (2)", True)


def test_bad_input_is_reported_and_the_rest_builds(runs, tmp_path):
    (runs / "tiny" / "t1" / "a" / "broken.json").write_text("{not json")
    (runs / "tiny" / "t1" / "a" / "partial.json").write_text(json.dumps({"cell": {}, "metrics": {}}))
    write_cell(runs, "t2", "a", "zero-shot", 0, None, RIGHT, model="other")
    built = build([runs, tmp_path / "missing", tmp_path / "empty"], tmp_path / "lb")
    text = "\n".join(built.problems)
    assert "broken.json: corrupt JSON (JSONDecodeError), skipped" in text and "partial.json: field cell.task: Field required" in text
    assert "missing: no such run folder" in text and "2 models" in text
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "| few-shot |" in readme and "Left out or conflicting" in readme


def test_missing_regime_shows_a_dash_and_a_footnote(runs):
    write_cell(runs, "t2", "a", "zero-shot", 0, None, RIGHT)
    table = main_table(collect([runs]).cells, 16)
    head = next(r for r in table.rows if r[0][0] == "head")
    assert head[2][0] == "—" and head[-1][0] == "—"
    assert any("head has no cells for t2" in n for n in table.notes)


def test_no_results_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path / "empty"), "--out", str(tmp_path / "lb")])
    assert result.exit_code == 2 and "no usable result files" in result.output and "Traceback" not in result.output


def test_group_by_model_keeps_both(runs, tmp_path):
    write_cell(runs, "t1", "a", "zero-shot", 0, None, RIGHT, model="other")
    built = build([runs], tmp_path / "lb", group_by="model")
    assert not any("models found" in p for p in built.problems)
    assert (tmp_path / "lb" / "README.md").read_text().count("Main table") == 2


def test_golden_markdown_latex_csv(runs):
    cells = collect([runs]).cells
    table = Table("T", ["regime", "acc"], [[("few-shot", False), ("90.0 ± 14.1 (2)", True)]], ["note 5%"])
    assert markdown(table) == (GOLDEN / "table.md").read_text()
    assert latex(table) == (GOLDEN / "table.tex").read_text()
    assert long_csv(cells) == (GOLDEN / "results.csv").read_text()


def test_outputs_and_html_structure(runs, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Head wins here.\n")
    build([runs], tmp_path / "lb", notes=notes)
    out = tmp_path / "lb"
    for name in ("README.md", "results.csv", "tables.tex", "index.html", "plots/accuracy_vs_cost.png",
                 "plots/accuracy_vs_cost.svg"):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text()
    assert page.count("<table class='sortable'") >= 3 and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script>" in page
    assert "Head wins here." in (out / "README.md").read_text() and "<p>Head wins here.</p>" in page
    assert "harness eval --tasks t1" in (out / "README.md").read_text()


def test_leaderboard_never_imports_torch(runs, tmp_path):
    code = ("import sys; from harness.leaderboard.build import build; "
            f"build([{str(runs)!r}], __import__('pathlib').Path({str(tmp_path / 'lb')!r})); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_html_renders_in_headless_chromium(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    build([runs], tmp_path / "lb")
    page = tmp_path / "lb" / "index.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<table class=\"sortable\"" in dom.stdout and "few-shot" in dom.stdout
    # the sorting script ran: it titles every header
    assert 'title="click to sort"' in dom.stdout
    shot = Path("test-artifacts") / "leaderboard.png"
    shot.parent.mkdir(exist_ok=True)
    subprocess.run([chromium, *flags, f"--screenshot={shot.resolve()}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_dev_ties_go_to_the_lower_dev_loss_then_the_template_name(tmp_path):
    root = tmp_path / "runs"
    write_cell(root, "t1", "b", "few-shot", 16, 13, RIGHT, dev=0.5, created="2026-11-26T09:00:00+00:00")
    write_cell(root, "t1", "a", "few-shot", 16, 13, HALF, dev=0.5, created="2026-11-26T10:00:00+00:00")
    assert per_seed(collect([root]).cells).iloc[0]["templates"] == "a"  # a tie: the name, not the file order
    for path in root.rglob("b/*.json"):
        data = json.loads(path.read_text())
        data["selection"]["dev_loss"] = 0.3
        path.write_text(json.dumps(data))
    for path in root.rglob("a/*.json"):
        data = json.loads(path.read_text())
        data["selection"]["dev_loss"] = 0.6
        path.write_text(json.dumps(data))
    assert per_seed(collect([root]).cells).iloc[0]["templates"] == "b"  # the lower dev loss


def test_collapsed_cells_are_flagged(runs, tmp_path):
    from harness.leaderboard.tables import balance_table

    cells = collect([runs]).cells
    table = main_table(cells, 16)
    rows = {row[0][0]: row for row in table.rows}
    assert rows["zero-shot"][1][0].endswith("‡")  # HALF predicts class 0 for all ten examples
    assert not rows["few-shot"][1][0].endswith("‡")
    table = balance_table(cells, 16)
    share, collapsed = table.header.index("largest class share %"), table.header.index("seeds ≥ 90% one class")
    balance = {row[1][0]: row for row in table.rows}
    assert balance["zero-shot"][share][0] == "100.0" and balance["zero-shot"][collapsed] == ("1 of 1", True)
    assert balance["head"][collapsed] == ("0 of 2", False)


def test_crossover_compares_with_the_few_shot_curve_that_has_the_most_k():
    import pandas as pd

    from harness.leaderboard.tables import crossover_points, crossover_table

    rows = [("few-shot", 16, 0.70, True)]  # plain few-shot at one k only: the calibrated curve is the reference
    rows += [("few-shot (dev-prior)", k, m, True) for k, m in ((2, 0.60), (4, 0.65), (8, 0.68), (16, 0.71))]
    rows += [("full", k, m, False) for k, m in ((2, 0.50), (4, 0.60), (8, 0.70), (16, 0.75))]
    rows += [("head", k, m, False) for k, m in ((2, 0.50), (4, 0.55), (8, 0.60), (16, 0.65))]
    curves = pd.DataFrame([{"task": "t", "regime": r, "k": k, "mean": m, "std": 0.0, "seeds": 5, "seeded": True,
                            "prompting": p} for r, k, m, p in rows])
    points = crossover_points(curves)
    assert points[("t", "")] == "few-shot (dev-prior)"
    assert points[("t", "full")] == "8" and points[("t", "head")] == "never in range (2–16)"
    table = crossover_table(curves)
    assert ["t", "full", "few-shot (dev-prior)", "8"] in [[c[0] for c in row] for row in table.rows]


@pytest.mark.parametrize("details, flag", [
    ({"selection": {"best_step": 8, "steps": 24, "history": [{"step": 8}, {"step": 16}, {"step": 24}]}},
     "flag_first_evaluation"),
    ({"settings": {"eval_every": 8, "patience": 2, "max_steps": 24}}, "flag_cannot_stop"),
    ({"selection": {"history": []}, "settings": {"learning_rates": [4e-5]}}, "flag_not_searched"),
    ({"predicted_distribution": {"a": 0.0, "b": 1.0}}, "flag_class_never_predicted"),
])
def test_every_selection_flag_fires(details, flag):
    from harness.leaderboard.collect import selection_flags

    fired = selection_flags(details)
    assert fired[flag] and not any(v for k, v in fired.items() if k != flag)
    quiet = selection_flags({"selection": {"best_step": 16, "steps": 40, "history": [{"step": 8}, {"step": 16}]},
                             "settings": {"eval_every": 8, "patience": 2, "max_steps": 40,
                                          "learning_rates": [1e-5, 4e-5]},
                             "predicted_distribution": {"a": 0.4, "b": 0.6}})
    assert not any(quiet.values())


@pytest.mark.parametrize("details", [
    {"settings": {"eval_every": 8, "patience": 2, "max_steps": 24, "min_steps": "0"}},  # found by the fuzz test
    {"settings": {"eval_every": "8", "patience": 2, "max_steps": 24}},
    {"selection": {"best_step": "8", "steps": 24, "history": [{"step": "8"}]}},
    {"selection": {"best_step": 8, "steps": None, "history": ["step 8"]}},
    {"selection": [1, 2], "settings": "fast", "predicted_distribution": [0.0, 1.0]},
])
def test_selection_flags_read_mistyped_records_as_no_flag(details):
    from harness.leaderboard.collect import selection_flags

    assert not any(selection_flags(details).values())


def test_dev_configurations_skip_mistyped_records():
    from harness.leaderboard.collect import dev_configurations

    assert dev_configurations({"selection": [1, 2], "demos_selection": "3"}) == []
    assert dev_configurations({"selection": {"runs": ["x", {"history": [{"dev_accuracy": 0.5}, 3]}]}}) == [0.5]


def test_the_selection_table_counts_the_flags(tmp_path):
    from harness.leaderboard.tables import selection_table

    root = tmp_path / "runs"
    for seed in (13, 21):
        write_cell(root, "t1", "a", "few-shot", 4, seed, HALF)  # predicts class 0 only
    for path in root.rglob("*.json"):
        data = json.loads(path.read_text())
        data["predicted_distribution"] = {"negative": 1.0, "positive": 0.0}
        path.write_text(json.dumps(data))
    table = selection_table(collect([root]).cells, 4)
    row = next(r for r in table.rows if r[1][0] == "few-shot")
    assert row[table.header.index("a class never predicted")] == ("2 of 2", True)
    assert row[table.header.index("a class with zero recall")] == ("2 of 2", True)  # HALF answers class 0 only


def test_zero_recall_fires_on_a_class_predicted_but_never_right(tmp_path):
    root = tmp_path / "runs"
    # both classes predicted, but no example of class 1 predicted right: class 1 is predicted once, on a class-0 item
    first_zero = GOLD.index(0)
    preds = [1 if i == first_zero else 0 for i in range(len(GOLD))]
    assert 1 in GOLD and set(preds) == {0, 1}
    write_cell(root, "t1", "a", "head", 16, 13, preds)
    write_cell(root, "t1", "a", "full", 16, 13, RIGHT)
    cells = collect([root]).cells.set_index("regime")
    assert cells.loc["head", "flag_zero_recall"] and not cells.loc["full", "flag_zero_recall"]


def _with_shift(root, task, regime, seed, target, preds_on_target, gold_on_target):
    """Add --eval-tasks output to a written cell: its target metrics and its <stem>.shift.jsonl."""
    folder = root / "tiny" / task / "a"
    stem = f"{regime}_k16_seed{seed}"
    result = json.loads((folder / f"{stem}.json").read_text())
    accuracy = float(np.mean([g == p for g, p in zip(gold_on_target, preds_on_target)]))
    result["shift"] = {target: {"n": len(preds_on_target), "left_out": {},
                                                          "metrics": {"accuracy": accuracy}}}
    (folder / f"{stem}.json").write_text(json.dumps(result))
    rows = [{"id": f"{target}::test-{i}", "gold": g, "pred": p, "probs": [0.5, 0.5]}
            for i, (g, p) in enumerate(zip(gold_on_target, preds_on_target))]
    (folder / f"{stem}.shift.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_shift_gap_compares_target_and_source_trained_cells_on_the_same_items(tmp_path):
    from harness.leaderboard.tables import shift_table

    root = tmp_path / "runs"
    for seed in (13, 21):
        write_cell(root, "src", "a", "head", 16, seed, RIGHT)
        write_cell(root, "tgt", "a", "head", 16, seed, RIGHT)  # 100 % on all ten target items
        # source-trained: 80 % on the first five target items only
        _with_shift(root, "src", "head", seed, "tgt", [GOLD[0], GOLD[1], 1 - GOLD[2], GOLD[3], GOLD[4]], GOLD[:5])
    row = shift_table(collect([root]).cells, 16).rows[0]
    assert row[6] == ("+20.0 (2)", False)  # 100 % − 80 % on the same five items, two seeds
    # target-trained cells that never scored those items: the gap is refused, and flagged
    root = tmp_path / "other"
    for seed in (13, 21):
        write_cell(root, "src", "a", "head", 16, seed, RIGHT)
        write_cell(root, "tgt", "a", "head", 16, seed, RIGHT)
        _with_shift(root, "src", "head", seed, "tgt", [GOLD[0]] * 3, [GOLD[0]] * 3)
        path = root / "tiny" / "src" / "a" / f"head_k16_seed{seed}.shift.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "id": f"tgt::other-{i}"}) + "\n" for i, r in enumerate(rows)))
    row = shift_table(collect([root]).cells, 16).rows[0]
    assert row[6] == ("— (not on the same items)", True)


def test_a_forgetting_probe_that_is_collapsed_or_at_chance_is_left_out_and_named():
    from harness.leaderboard.tables import probe_problem

    usable = {"n": 200, "before": 0.80, "classes": 2, "largest_class_share_before": 0.55}
    assert probe_problem("sst2", usable) is None
    assert probe_problem("sst2", {**usable, "largest_class_share_before": 0.97}) == "collapsed: 97% one class"
    assert probe_problem("sst2", {**usable, "before": 0.515}) == "at chance: 51.5 % of 200"
    # a result before harness 0.5 records neither: the task file gives the classes (agnews: 4, chance 25 %)
    assert probe_problem("agnews", {"n": 200, "before": 0.27}).startswith("at chance")
    assert probe_problem("agnews", {"n": 200, "before": 0.60}) is None


def test_provenance_counts_the_cells_of_each_harness_version(runs):
    from harness.leaderboard.build import provenance

    cells = collect([runs]).cells
    footer = provenance(cells, [runs])
    assert f"harness: 0.1.0: {len(cells)} cells (abc)" in footer


def test_the_template_table_shows_the_spread_of_every_regime_run_on_several_templates(tmp_path):
    from harness.leaderboard.tables import template_table

    root = tmp_path / "runs"
    for seed in (13, 21):
        write_cell(root, "t1", "a", "full", 16, seed, RIGHT, dev=0.9)
        write_cell(root, "t1", "b", "full", 16, seed, HALF, dev=0.5)
        write_cell(root, "t1", "a", "head", 16, seed, RIGHT, dev=0.9)  # one template: no spread to show
    rows = {row[1][0]: row for row in template_table(collect([root]).cells, 16).rows}
    assert set(rows) == {"full"}
    assert rows["full"][4] == ("50.0", False) and rows["full"][6] == ("100.0", False)  # spread; dev picks "a"


def test_the_chat_table_pairs_each_chat_variant_with_its_plain_form(tmp_path):
    from harness.leaderboard.chat import chat_table, plain_of

    assert plain_of("zero-shot (chat)") == "zero-shot"
    assert plain_of("few-shot (dev-prior-chat)") == "few-shot (dev-prior)"
    assert plain_of("few-shot (dev-prior)") is None and plain_of("head") is None
    root = tmp_path / "runs"
    wrong = [1 - g for g in GOLD]
    write_cell(root, "t1", "a", "zero-shot", 0, None, wrong)
    write_cell(root, "t1", "a", "zero-shot", 0, None, GOLD, variant="chat")  # the chat form gets every item right
    for seed in (13, 21, 42):
        write_cell(root, "t1", "a", "few-shot", 16, seed, GOLD, variant="dev-prior")
        write_cell(root, "t1", "a", "few-shot", 16, seed, GOLD, variant="dev-prior-chat")  # the same answers
        write_cell(root, "t1", "a", "head", 16, seed, GOLD)
    table = chat_table(collect([root]).cells, 16)
    rows = {row[1][0]: [text for text, _ in row] for row in table.rows}
    assert set(rows) == {"zero-shot", "few-shot (dev-prior)"}  # head has no chat form
    assert rows["zero-shot"][2:7] == ["1", "10", "0.0", "100.0", "+100.0"] and rows["zero-shot"][-1] == "helps"
    assert rows["few-shot (dev-prior)"][2] == "3" and rows["few-shot (dev-prior)"][-1] == "no difference shown"
