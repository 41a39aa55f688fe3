"""The regime registry: lookup, a regime added by a test, costs checked by value, and real eval output
through the leaderboard."""

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness.models
from harness import regimes
from harness.backbone import block_parameters, decoder_parameters
from harness.cli import cli
from harness.errors import HarnessError
from harness.prompts import load_template, render_input
from harness.regimes.protocol import RegimeRun
from harness.tasks import load_examples, load_task
from harness.types import Cost, Prediction

# The example regime of the README: always the most frequent class of the k training examples.
@dataclass(frozen=True)
class MajoritySettings:
    pass


class Majority:
    name, settings, prompting, draws_examples, takes_all_k, adapts_backbone = \
        "majority", MajoritySettings, False, True, True, False

    def needs_dev(self, settings, templates): return False
    def resolve(self, options, device): return (MajoritySettings(),)
    def variant(self, settings): return ""

    def run(self, lm, shared, template, data, settings, progress):
        top = Counter(e.label for e in data.train).most_common(1)[0][0]
        probs = tuple(float(c == top) for c in range(len(data.label_names)))
        return RegimeRun([Prediction(x.id, None, probs) for x in data.test], Cost(train_examples=len(data.train)))


@pytest.fixture
def runner(toy_env, loaded, monkeypatch):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return CliRunner()


def _eval(runner, out, *args):
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--seeds", "13", "--k", "2",
                                 "--limit", "all", "--out", str(out), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _cell(out, stem):
    return json.loads(next(Path(out).rglob(f"{stem}.json")).read_text())


def test_registry_names_match_and_unknown_lists_them():
    assert list(regimes.REGISTRY) == ["zero-shot", "few-shot", "head", "full", "prompt-ft", "prompt-tuning", "prefix",
                                      "lora", "ia3", "bitfit", "scratch", "tfidf"]
    assert all(regime.name == name for name, regime in regimes.REGISTRY.items())
    with pytest.raises(HarnessError, match=r"unknown regime 'qlora' \(known: zero-shot, few-shot, head, full, "
                                           r"prompt-ft, prompt-tuning, prefix, lora, ia3, bitfit, scratch, tfidf\)"):
        regimes.get_regime("qlora")
    assert regimes.in_context_reference() == "few-shot"


def test_a_regime_added_to_the_registry_runs_through_eval_and_the_leaderboard(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(regimes.REGISTRY, "majority", Majority())
    result = _eval(runner, tmp_path / "runs", "--regimes", "zero-shot,majority")
    cell = _cell(tmp_path / "runs", "majority_k2_seed13")
    rows = [json.loads(line) for line in next(tmp_path.rglob("majority_k2_seed13.jsonl")).read_text().splitlines()]
    assert len({r["pred"] for r in rows}) == 1 and cell["cost"]["train_examples"] == 4
    assert cell["metrics"]["accuracy"] == sum(r["pred"] == r["gold"] for r in rows) / len(rows)
    assert "| toy | majority |" in result.output
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0, built.output
    assert "| majority |" in (tmp_path / "lb" / "README.md").read_text()


def test_real_eval_output_of_every_regime_builds_the_leaderboard(runner, tmp_path):
    _eval(runner, tmp_path / "runs", "--seeds", "13,21", "--full-max-steps", "2", "--templates", "all",
          "--regimes", ",".join(regimes.REGISTRY), "--prompt-ft-max-steps", "2", "--scratch-max-steps", "2",
          "--lora-max-steps", "2", "--ia3-max-steps", "2", "--bitfit-max-steps", "2")
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0, built.output
    assert "note:" not in built.output  # nothing skipped, nothing conflicting
    readme = (tmp_path / "lb" / "README.md").read_text()
    main = readme.split("### Main table (k = 2)")[1].split("###")[0]
    assert [line.split("|")[1].strip() for line in main.splitlines() if line.startswith("| ")][1:] == [
        "zero-shot", "few-shot", "head", "full", "prompt-ft", "prompt-tuning", "prefix", "lora", "ia3", "bitfit",
        "scratch", "tfidf", "majority", "random"]
    assert "(2)" in main.split("| few-shot |")[1].splitlines()[0]  # two seeds
    csv = (tmp_path / "lb" / "results.csv").read_text()
    assert csv.count(",toy,") >= 2 * 2 * 10  # 2 templates x 2 seeds x 10 regimes (zero-shot selects on each seed's dev)


def _tokens(tokenizer, texts):
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]


def test_costs_by_value(runner, tmp_path, model, tokenizer):
    _eval(runner, tmp_path, "--regimes", "zero-shot,head,full", "--full-max-steps", "2")
    _eval(runner, tmp_path, "--regimes", "head", "--unfreeze-top", "1")
    task = load_task("toy")
    template = load_template(task, "cloze")
    by_id = {e.id: e for e in load_examples(task, "train") + load_examples(task, "test")}
    texts = lambda ids: [render_input(template, by_id[i]) for i in ids]  # noqa: E731
    blocks, decoder, classes, hidden = block_parameters(model), decoder_parameters(model), 2, 32
    new_head = classes * (hidden + 1)
    test_ids = [e.id for e in load_examples(task, "test")]
    test_tokens = sum(_tokens(tokenizer, texts(test_ids)))

    zero = _cell(tmp_path, "zero-shot_k0")["cost"]
    assert zero["inference_flops_per_example"] == pytest.approx(2 * blocks * test_tokens / len(test_ids))
    assert zero["train_flops"] == zero["stored_bytes_per_task"] == zero["trainable_parameters"] == 0
    assert zero["total_parameters"] == sum(p.numel() for p in model.parameters())

    head = _cell(tmp_path, "head_k2_seed13")
    train, dev = sum(_tokens(tokenizer, texts(head["train_ids"]))), sum(_tokens(tokenizer, texts(head["dev_ids"])))
    cost = head["cost"]
    assert cost["trainable_parameters"] == new_head and cost["stored_bytes_per_task"] == 4 * new_head
    assert cost["train_flops"] == 2 * blocks * (train + dev) and cost["train_tokens"] == train
    assert cost["total_parameters"] == decoder + new_head and cost["block_parameters"] == blocks
    assert cost["trainable_parameters_percent"] == pytest.approx(100 * new_head / (decoder + new_head))
    assert cost["inference_flops_per_example"] == pytest.approx(2 * blocks * test_tokens / len(test_ids))

    top = _cell(tmp_path, "head-top1_k2_seed13")["cost"]
    top_block = sum(p.numel() for p in model.model.layers[-1].parameters()) + sum(
        p.numel() for p in model.model.norm.parameters())
    assert top["trainable_parameters"] == top_block + new_head
    assert top["stored_bytes_per_task"] == 4 * (top_block + new_head)
    assert top["train_flops"] == 2 * (blocks - top_block) * (train + dev) + 6 * top_block * top["train_tokens"]

    full = _cell(tmp_path, "full_k2_seed13")["cost"]
    assert full["trainable_parameters"] == decoder + new_head
    assert full["stored_bytes_per_task"] == 4 * (decoder + new_head)
    assert full["train_flops"] == 6 * blocks * full["train_tokens"] and full["train_steps"] == 2
    assert full["trainable_parameters_percent"] == 100


def test_variants_are_the_regimes_own(runner, tmp_path):
    _eval(runner, tmp_path, "--regimes", "head,full", "--unfreeze-top", "1", "--pooling", "mean", "--head-init",
          "verbalizer", "--full-max-steps", "1")
    names = sorted(p.name for p in tmp_path.rglob("*.json"))
    assert names == ["full-verbalizer-init_k2_seed13.json", "head-top1-mean-pool-verbalizer-init_k2_seed13.json"]


def test_one_spelling_from_flag_to_json(runner, tmp_path):
    _eval(runner, tmp_path, "--regimes", "full", "--full-learning-rates", "1e-3,2e-3", "--full-max-steps", "2",
          "--batch-size", "4", "--max-tokens", "32")
    cell = _cell(tmp_path, "full_k2_seed13")
    assert cell["settings"]["learning_rates"] == [1e-3, 2e-3] and cell["settings"]["max_steps"] == 2
    assert cell["settings"]["batch_size"] == 4 and cell["settings"]["max_tokens"] == 32
    assert cell["config"]["settings"]["learning_rates"] == [1e-3, 2e-3]
    assert cell["selection"]["chosen"]["learning_rate"] in (1e-3, 2e-3)
    assert cell["invocation"]["options"]["full_learning_rates"] == [1e-3, 2e-3]
    template = (Path(__file__).parent / "fixtures" / "prompts" / "toy" / "cloze.jinja").read_text()
    assert cell["template_file"] == template and "verbalizers:" in cell["template_file"]  # the header too


def _rows(out, stem):
    return [json.loads(line) for line in next(Path(out).rglob(f"{stem}.jsonl")).read_text().splitlines()]


def test_calibrated_prompting_variants(runner, tmp_path):
    from harness.regimes.calibration import calibrate
    from harness.predict import softmax

    result = _eval(runner, tmp_path, "--regimes", "zero-shot,few-shot", "--calibration", "none,content-free,dev-prior")
    names = sorted(p.name for p in tmp_path.rglob("*.json"))
    assert names == ["few-shot-content-free_k2_seed13.json", "few-shot-dev-prior_k2_seed13.json",
                     "few-shot_k2_seed13.json", "zero-shot-content-free_k0.json", "zero-shot-dev-prior_k2_seed13.json",
                     "zero-shot_k0.json"]
    assert "| toy | few-shot (content-free) | 2 |" in result.output
    plain = _rows(tmp_path, "few-shot_k2_seed13")
    for variant, inputs in (("content-free", 3), ("dev-prior", 4)):
        cell = _cell(tmp_path, f"few-shot-{variant}_k2_seed13")
        prior = cell["calibration"]["prior"]
        assert cell["calibration"]["inputs"] == inputs and len(prior) == 2 and sum(prior) == pytest.approx(1)
        for raw, calibrated in zip(plain, _rows(tmp_path, f"few-shot-{variant}_k2_seed13")):
            assert calibrated["loglik"] == pytest.approx(raw["loglik"])  # the same scores...
            assert calibrated["probs"] == pytest.approx(list(calibrate(softmax(raw["loglik"]), prior)))  # ...divided
            assert calibrated["pred"] == max(range(2), key=calibrated["probs"].__getitem__)
    # dev-prior reads a dev set, even for zero-shot: the seed's, the one few-shot selects on
    assert _cell(tmp_path, "zero-shot-dev-prior_k2_seed13")["dev_ids"] == \
        _cell(tmp_path, "few-shot-dev-prior_k2_seed13")["dev_ids"]
    assert "dev_ids" not in _cell(tmp_path, "zero-shot_k0")  # one template: nothing to choose, no dev set
    assert sum(_cell(tmp_path, "zero-shot_k0")["predicted_distribution"].values()) == pytest.approx(1)


def test_unknown_calibration_is_one_line(runner, tmp_path):
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--calibration", "platt", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown --calibration 'platt' (known: none, content-free, dev-prior)" in result.output


def test_calibrated_variants_reuse_the_plain_scores(runner, tmp_path, monkeypatch):
    import harness.regimes.prompting as prompting

    calls = []
    original = prompting.predict_prompting

    def counting(model, tokenizer, max_length, template, inputs, demos, *args, **kwargs):
        calls.append(len(inputs))
        return original(model, tokenizer, max_length, template, inputs, demos, *args, **kwargs)

    monkeypatch.setattr(prompting, "predict_prompting", counting)
    _eval(runner, tmp_path, "--regimes", "few-shot", "--calibration", "none,dev-prior,content-free", "--demos", "all")
    assert calls == [7, 4, 3]  # test inputs once, dev inputs once, the three content-free inputs once


def test_demo_sets_ensemble_equals_averaging_separate_runs(toy_env, loaded):
    from harness.cells import draw_for, fit_data
    from harness.regimes.features import FeatureStore
    from harness.predict import predict_prompting, softmax
    from harness.regimes.prompting import FewShotSettings
    from harness.regimes.protocol import Shared
    from harness.sampling import draw_demo_sets
    from harness.types import Cell

    task = load_task("toy")
    template = load_template(task, "cloze")
    test = load_examples(task, "test")
    few = regimes.get_regime("few-shot")
    settings = FewShotSettings(demos=2, demo_sets=3)
    cell = Cell("toy", "cloze", "few-shot", 4, 13)
    draw = draw_for(cell, few, settings, 1, load_examples(task, "train"), [], task)
    data = fit_data(draw, test, task, cell)
    run = few.run(loaded, Shared(FeatureStore(loaded.model, loaded.tokenizer)), template, data, settings, False)
    sets = draw_demo_sets(draw.train, 2, 3, 13, 2)
    assert len({tuple(e.id for e in s) for s in sets}) == 3 and all(len(s) == 4 for s in sets)
    assert run.details["demo_sets"] == [[e.id for e in s] for s in sets]
    separate = [predict_prompting(loaded.model, loaded.tokenizer, loaded.max_length, template, data.test, s, 16).predictions
                for s in sets]
    for i, p in enumerate(run.predictions):
        mean = [sum(r[i].scores[c] for r in separate) / 3 for c in range(2)]
        assert p.scores == pytest.approx(mean) and p.probs == pytest.approx(softmax(mean))
    assert few.variant(settings) == "m2-3sets"
    one = few.run(loaded, Shared(FeatureStore(loaded.model, loaded.tokenizer)), template, data,
                  FewShotSettings(demos="all"), False)
    assert one.details["demo_ids"] == [e.id for e in draw.train] and "demo_sets" not in one.details


def test_demos_chosen_on_dev_equal_a_run_with_that_many(runner, tmp_path):
    """--demos dev (the default) tries m = 1, 2, 4 at k = 4 on the dev set, keeps the best by the stated rule,
    and its test predictions are those of a run given that m; test inputs are scored for the chosen m only."""
    _eval(runner, tmp_path / "dev", "--regimes", "few-shot", "--k", "4")
    cell = _cell(tmp_path / "dev", "few-shot_k4_seed13")
    chosen = cell["demos_selection"]
    assert chosen["grid"] == [1, 2, 4] and len(chosen["dev_accuracy"]) == len(chosen["dev_loss"]) == 3
    best = min(range(3), key=lambda i: (-chosen["dev_accuracy"][i], chosen["dev_loss"][i], chosen["grid"][i]))
    assert chosen["chosen"] == chosen["grid"][best] and chosen["edge"] == (best in (0, 2))
    assert cell["selection"]["dev_accuracy"] == chosen["dev_accuracy"][best]
    m = chosen["chosen"]
    _eval(runner, tmp_path / "fixed", "--regimes", "few-shot", "--k", "4", "--demos", str(m))
    fixed_name = "few-shot-m%d_k4_seed13" % m
    for a, b in zip(_rows(tmp_path / "dev", "few-shot_k4_seed13"), _rows(tmp_path / "fixed", fixed_name)):
        assert a["loglik"] == pytest.approx(b["loglik"]) and a["pred"] == b["pred"]
    # the cell's own cost: the test pass plus the dev pass of every m tried
    assert cell["tokens_processed"] > _cell(tmp_path / "fixed", fixed_name)["tokens_processed"]


def test_demo_grid():
    from harness.regimes.prompting import demo_grid

    assert demo_grid(1) == [1] and demo_grid(16) == [1, 2, 4, 8, 16] and demo_grid(12) == [1, 2, 4, 8, 12]


def test_few_shot_cells_of_harness_0_2_do_not_match_the_dev_chosen_default():
    """0.2 put all k demos in the prompt with the field at its default (not hashed); the new default must hash
    differently, or an old cell would be taken for a new one."""
    from harness.regimes.options import hashed
    from harness.regimes.prompting import FewShotSettings, PromptingSettings

    assert hashed(FewShotSettings()) == {"demos": "dev"} and hashed(FewShotSettings(demos="all")) == {"demos": "all"}
    assert hashed(PromptingSettings()) == {}  # zero-shot's cells keep their hash


def test_a_list_of_depths_gives_one_head_variant_each(runner, tmp_path):
    _eval(runner, tmp_path, "--regimes", "head", "--unfreeze-top", "0,1")
    names = sorted(p.name for p in tmp_path.rglob("*.json"))
    assert names == ["head-top1_k2_seed13.json", "head_k2_seed13.json"]
    assert _cell(tmp_path, "head-top1_k2_seed13")["settings"]["unfreeze_top"] == 1
