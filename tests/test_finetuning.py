import json
from contextlib import nullcontext

import pytest
import torch
from click.testing import CliRunner

import harness.models
from harness.cells import draw_for, fit_data
from harness.cli import cli
from harness.prompts import answers, load_template
from harness.truncation import render_splits
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.full import FullSettings
from harness.regimes.head import HeadSettings
from harness.regimes.protocol import Shared
from harness.regimes.training import length_grouped_batches, padding_fraction
from harness.tasks import load_examples, load_task
from harness.types import Cell
from tiny import tiny_tokenizer

FAST_FULL = FullSettings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(1e-3,))


def _data(seed=13, k=2, tokenizer=None):
    task = load_task("toy")
    template = load_template(task, "cloze")
    cell = Cell("toy", "cloze", "head", k, seed)
    draw = draw_for(cell, get_regime("head"), HeadSettings(), 1, load_examples(task, "train"), [], task)
    test = load_examples(task, "test")
    texts, labels = render_splits(template, fit_data(draw, test, task, cell), tokenizer or tiny_tokenizer(), 256)
    return task, draw, test, texts, labels


def _run(loaded, regime, settings, k=2, seed=13, template="cloze", shared=None):
    """One cell of `regime` on the toy task, as the runner runs it (without writing it)."""
    task = load_task("toy")
    cell = Cell("toy", template, regime, k, seed)
    draw = draw_for(cell, get_regime(regime), settings, 1, load_examples(task, "train"), [], task)
    data = fit_data(draw, load_examples(task, "test"), task, cell)
    shared = shared or Shared(FeatureStore(loaded.model, loaded.tokenizer))
    return get_regime(regime).run(loaded, shared, load_template(task, template), data, settings, False)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("top", [0, 1])
def test_head_trains_and_leaves_the_backbone_bit_identical(toy_env, loaded, top):
    model = loaded.model
    before = _state(model)
    run = _run(loaded, "head", HeadSettings(unfreeze_top=top, max_steps=4))
    assert _same(before, model.state_dict())
    assert len(run.predictions) == 7 and all(abs(sum(p.probs) - 1) < 1e-5 for p in run.predictions)
    assert ("learning_rate" if top else "C") in run.details["selection"]["chosen"]
    assert (run.deployed is not None) == bool(top)  # the probe changes nothing the LM runs
    if top:
        with run.deployed(model) as deployed:
            trained = dict(deployed.model.layers[-1].named_parameters())
            assert any(not torch.equal(v, before[f"model.layers.1.{k}"]) for k, v in trained.items())
        assert _same(before, model.state_dict())  # swapped back


def test_head_features_are_computed_once_per_input(toy_env, loaded):
    shared = Shared(FeatureStore(loaded.model, loaded.tokenizer))
    _run(loaded, "head", HeadSettings(c_grid=(0.1, 1.0)), shared=shared)
    after_first = shared.features.tokens_run
    _run(loaded, "head", HeadSettings(c_grid=(0.1, 1.0)), seed=21, shared=shared)
    assert after_first > 0 and shared.features.tokens_run > after_first  # seed 21 draws other examples...
    again = shared.features.tokens_run
    _run(loaded, "head", HeadSettings(c_grid=(0.1, 1.0)), shared=shared)
    assert shared.features.tokens_run == again  # ...but seed 13's are cached


def test_verbalizer_init_starts_from_the_lm_head_rows(toy_env, model):
    from harness.regimes.classifier import new_head

    head = new_head(model.get_output_embeddings(), [7, 9], 32, 2, "verbalizer", None, 0.02, "cpu")
    assert torch.equal(head.weight, model.lm_head.weight[[7, 9]]) and not head.bias.any()
    assert not new_head(None, None, 32, 2, "zero", None, 0.0, "cpu").weight.any()  # top blocks: exact zeros
    assert new_head(None, None, 32, 2, "zero", None, 0.02, "cpu").weight.std() > 0  # full: small random


def test_probe_equals_scikit_learn_fitted_by_hand(toy_env, loaded):
    """head's predictions are StandardScaler (train statistics) + LogisticRegression at the dev-chosen C."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    _, _, _, texts, labels = _data(k=4)
    store = FeatureStore(loaded.model, loaded.tokenizer)
    grid = (1e-3, 1e-1, 10.0)
    run = _run(loaded, "head", HeadSettings(c_grid=grid), k=4)
    chosen = run.details["selection"]
    feats = {s: store.pooled(texts[s], "last", 256, 16).double().numpy() for s in texts}
    scaler = StandardScaler().fit(feats["train"])
    dev_scores = []
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(feats["train"]), labels["train"])
        probs = clf.predict_proba(scaler.transform(feats["dev"]))
        dev_scores.append((np.mean(probs.argmax(1) == labels["dev"]),
                           -np.mean(np.log(probs[np.arange(len(probs)), labels["dev"]]))))
        if c == chosen["chosen"]["C"]:
            expected = clf.predict_proba(scaler.transform(feats["test"]))
    best = min(range(3), key=lambda i: (-dev_scores[i][0], dev_scores[i][1], i))
    assert chosen["chosen"]["C"] == grid[best] and [g["C"] for g in chosen["grid"]] == list(grid)
    assert np.allclose([p.probs for p in run.predictions], expected, atol=1e-8)
    assert bool(run.details["warnings"]) == (best in (0, 2))  # a choice on the grid's edge is flagged


def test_lp_ft_starts_from_the_probes_weights(toy_env, loaded):
    """--head-init probe: before any step, full's classifier gives the probe's probabilities."""
    from harness.regimes.classifier import predict_logits
    from harness.regimes.objectives import NewHead
    from harness.regimes.sources import PRETRAINED

    task, draw, test, texts, _ = _data(k=4)
    cell = Cell("toy", "cloze", "full", 4, 13)
    shared = Shared(FeatureStore(loaded.model, loaded.tokenizer))
    cfg = FullSettings(head_init="probe", c_grid=(0.01, 1.0))
    template = load_template(task, "cloze")
    objective = NewHead(zero_std=0.02)
    prepared = objective.prepare(loaded, shared, template, fit_data(draw, test, task, cell), cfg, PRETRAINED, False)
    classifier, _ = objective.wrap(loaded, PRETRAINED, PRETRAINED.build(loaded.model, False, cfg, 13), prepared,
                                   template, cfg, 2)
    start = torch.softmax(predict_logits(classifier, prepared.inputs["test"], 0, "cpu", 16, nullcontext), -1)
    expected = prepared.probe.probabilities(shared.features.pooled(texts["test"], "last", 256, 16).numpy())
    assert abs(start.numpy() - expected).max() < 1e-4


def test_selection_warnings_name_the_edge_and_the_last_step():
    from harness.regimes.checks import grid_edge, last_step

    assert grid_edge("learning rate", (1e-5, 1e-4), 1e-4)[0].startswith("learning rate = 0.0001 is on")
    assert "last step (1000 of 1000)" in last_step(1000, 1000, 1000)[0]
    assert grid_edge("lr", (1e-5, 2e-5, 1e-4), 2e-5) == last_step(300, 550, 1000) == []  # inside, stopped early


def test_full_trains_a_copy_and_never_the_base(toy_env, loaded):
    model = loaded.model
    before = _state(model)
    run = _run(loaded, "full", FAST_FULL)
    assert _same(before, model.state_dict())
    with run.deployed(model) as deployed:
        trained = dict(deployed.model.named_parameters())
        assert any(not torch.equal(trained[k], before[f"model.{k}"]) for k in trained)
    assert _same(before, model.state_dict())
    assert len(run.predictions) == 7 and run.cost.train_steps == 4
    assert run.details["selection"]["chosen"] == {"learning_rate": 1e-3}


def test_same_seed_same_results(toy_env, loaded):
    a = _run(loaded, "full", FAST_FULL)
    torch.rand(7)  # whatever the process drew before a cell does not change it (the new head's start is seeded)
    b = _run(loaded, "full", FAST_FULL)
    assert [p.probs for p in a.predictions] == [p.probs for p in b.predictions]


def test_dev_and_train_are_disjoint_and_never_test(toy_env):
    task, draw, test, _, _ = _data(seed=21, k=3)
    train_ids, dev_ids = {e.id for e in draw.train}, {e.id for e in draw.dev}
    assert len(train_ids) == len(dev_ids) == 6 and not train_ids & dev_ids
    assert not (train_ids | dev_ids) & {e.id for e in test}
    other = _data(seed=42, k=3)[1]
    assert {e.id for e in other.train} != train_ids


def test_length_grouped_batches_waste_little_padding():
    lengths = [5, 50, 6, 48, 7, 51, 5, 49] * 8
    grouped = length_grouped_batches(lengths, 4, 13)
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))
    naive = [list(range(i, i + 4)) for i in range(0, len(lengths), 4)]
    assert padding_fraction(lengths, grouped) < 0.1 < padding_fraction(lengths, naive)


@pytest.fixture
def patched(toy_env, loaded, monkeypatch):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return CliRunner()


def test_cli_runs_head_top1_and_full_and_records_costs(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "head,full", "--k", "2", "--seeds", "13",
                                  "--templates", "cloze", "--full-max-steps", "2", "--unfreeze-top", "1",
                                  "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    head = json.loads(next(tmp_path.rglob("head-top1_k2_seed13.json")).read_text())
    full = json.loads(next(tmp_path.rglob("full_k2_seed13.json")).read_text())
    for record in (head, full):
        cost = record["cost"]
        for key in ("trainable_parameters", "trainable_parameters_percent", "train_examples", "train_steps",
                    "train_tokens", "train_wall_time_s", "train_flops", "inference_flops_per_example",
                    "peak_rss_bytes", "stored_bytes_per_task"):
            assert key in cost, key
        assert record["settings"] and record["selection"]["rule"] and record["selection"]["chosen"]
        assert cost["train_examples"] == 4 and len(record["dev_ids"]) == 4 and len(record["train_ids"]) == 4
    assert full["cost"]["trainable_parameters_percent"] > 99 > head["cost"]["trainable_parameters_percent"] > 0
    assert "| toy | head (top1) |" in result.output


def test_selection_never_sees_test_labels(patched, tmp_path, monkeypatch):
    seen = []
    head = get_regime("head")
    original = type(head).run

    def spy(self, lm, shared, template, data, *args, **kwargs):
        seen.append(data)
        return original(self, lm, shared, template, data, *args, **kwargs)

    monkeypatch.setattr(type(head), "run", spy)
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "head", "--k", "2", "--seeds", "13",
                                  "--templates", "cloze", "--out", str(tmp_path)])
    assert result.exit_code == 0 and len(seen) == 1
    # the test inputs carry an id and fields, and nothing else: no label to leak
    assert {f for x in seen[0].test for f in x.__slots__} == {"id", "fields"}
    assert all("label" not in x.fields for x in seen[0].test)


def test_nan_loss_fails_the_cell_and_the_run_goes_on(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "zero-shot,full", "--k", "2", "--seeds",
                                  "13", "--templates", "cloze", "--full-learning-rates", "1e12",
                                  "--full-max-steps", "3",
                                  "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    failed = json.loads(next(tmp_path.rglob("full_k2_seed13.json")).read_text())
    assert failed["status"] == "failed" and "loss became" in failed["reason"] and failed["failed_step"] >= 1
    assert "1 failed" in result.output and (next(tmp_path.rglob("zero-shot_k0.json"))).is_file()


def test_out_of_memory_is_one_line_and_keeps_finished_cells(patched, tmp_path, monkeypatch):
    import harness.regimes.training as training

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "fit_over_learning_rates", boom)
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "zero-shot,full", "--k", "2", "--seeds",
                                  "13", "--templates", "cloze", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "ran out of memory" in result.output and "--batch-size" in result.output
    assert next(tmp_path.rglob("zero-shot_k0.json")).is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "9", "--regimes", "head"], "plus a dev set"),
        (["--pooling", "max"], "unknown --pooling 'max' (known: last, mean)"),
        (["--head-init", "random"], "unknown --head-init 'random'"),
        (["--unfreeze-top", "-1"], "--unfreeze-top must be 0 or more, got -1"),
        (["--k", "five"], "--k must be comma-separated positive integers or 'all'"),
        (["--k", "full"], "--k must be comma-separated positive integers or 'all'"),
        (["--k", "-5"], "--k must be comma-separated positive integers or 'all'"),
        (["--regimes", "head,qlora"], "unknown regime 'qlora' (known: zero-shot, few-shot, head, full, prompt-ft, prompt-tuning, prefix, lora, ia3, bitfit, scratch, tfidf)"),
    ],
)
def test_fine_tuning_bad_input(patched, tmp_path, args, message):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_device_defaults_picks_another_device_kinds_settings(patched, tmp_path):
    args = ["eval", "--tasks", "toy", "--regimes", "full", "--k", "2", "--seeds", "13", "--templates", "cloze",
            "--full-max-steps", "2"]
    runs = {}
    for kind in ("cpu", "cuda"):
        result = patched.invoke(cli, [*args, "--device-defaults", kind, "--out", str(tmp_path / kind)])
        assert result.exit_code == 0, result.output
        runs[kind] = json.loads(next((tmp_path / kind).rglob("full_k2_seed13.json")).read_text())["settings"]
    assert (runs["cpu"]["batch_size"], runs["cpu"]["eval_every"], runs["cpu"]["patience"]) == (8, 8, 2)
    assert (runs["cuda"]["batch_size"], runs["cuda"]["eval_every"], runs["cuda"]["patience"]) == (8, 10, 10)
    assert runs["cpu"]["max_steps"] == runs["cuda"]["max_steps"] == 2


def test_changing_device_defaults_in_the_same_out_is_refused(patched, tmp_path):
    """The hash covers the resolved settings, not what was typed: cpu and cuda defaults are two configurations."""
    args = ["eval", "--tasks", "toy", "--regimes", "full", "--k", "2", "--seeds", "13", "--templates", "cloze",
            "--limit", "3", "--out", str(tmp_path)]
    first = patched.invoke(cli, [*args, "--device-defaults", "cpu"])
    assert first.exit_code == 0, first.output
    again = patched.invoke(cli, [*args, "--device-defaults", "cpu"])
    assert "0 cells computed, 1 found on disk" in again.output
    other = patched.invoke(cli, [*args, "--device-defaults", "cuda"])
    assert other.exit_code == 2 and "holds a result of another configuration" in other.output
    assert "settings.learning_rates [4e-05] -> [1e-05, 2e-05, 5e-05, 0.0001]" in other.output


def test_results_from_before_settings_were_hashed_are_refused_with_the_reason(patched, tmp_path):
    args = ["eval", "--tasks", "toy", "--regimes", "zero-shot", "--templates", "cloze", "--limit", "3",
            "--out", str(tmp_path)]
    assert patched.invoke(cli, args).exit_code == 0
    path = next(tmp_path.rglob("zero-shot_k0.json"))
    old = json.loads(path.read_text())
    del old["config"]["settings"]
    old["config_hash"], old["harness"]["version"] = "0123456789abcdef", "0.1.0"
    path.write_text(json.dumps(old))
    result = patched.invoke(cli, args)
    assert result.exit_code == 2 and "written by harness 0.1.0" in result.output


def test_hash_covers_device_kind_and_dtype(patched, tmp_path, monkeypatch):
    import torch

    args = ["eval", "--tasks", "toy", "--regimes", "zero-shot", "--templates", "cloze", "--limit", "3",
            "--out", str(tmp_path)]
    assert patched.invoke(cli, args).exit_code == 0
    config = json.loads(next(tmp_path.rglob("zero-shot_k0.json")).read_text())["config"]
    assert (config["device"], config["dtype"]) == ("cpu", "float32")
    monkeypatch.setattr(harness.models, "pick_device", lambda: ("cuda", torch.bfloat16))
    result = patched.invoke(cli, args)
    assert result.exit_code == 2 and "another configuration" in result.output


def _prompt_ft_settings(**changes):
    from harness.regimes.prompt_ft import PromptFtSettings

    return PromptFtSettings(**{"max_steps": 6, "batch_size": 4, "eval_every": 3, "learning_rates": (3e-3,),
                               "patience": 5, **changes})


def test_prompt_ft_answer_scores_equal_the_zero_shot_scorers(toy_env, loaded):
    """One-token answers (read off one row) and answers of several tokens (a row each): the training scores are
    the zero-shot scorer's."""
    from harness.prompts import answers, render_input
    from harness.predict import predict_prompting
    from harness.regimes.answer_scores import AnswerScorer, batch_answers, encode_answers

    task, draw, _, _, _ = _data(k=4)
    for name in ("cloze", "plain"):
        template = load_template(task, name)
        rows = [encode_answers(loaded.tokenizer, render_input(template, e), answers(template), 256)
                for e in draw.train]
        assert all(len(r.rows) == (1 if name == "cloze" else 2) for r in rows)
        batch, mask = batch_answers(rows, loaded.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            mine = AnswerScorer(loaded.model).eval()(batch, mask)
        zero = predict_prompting(loaded.model, loaded.tokenizer, loaded.max_length, template, draw.train, (), 4)
        assert torch.allclose(mine, torch.tensor([p.scores for p in zero.predictions]), atol=1e-4)


def test_prompt_ft_moves_the_verbalizer_scores_and_scores_as_zero_shot(toy_env, loaded):
    """Training raises the gold answer's log-likelihood on the training inputs; the base LM is untouched; the
    test predictions are the zero-shot scorer's on the trained copy."""
    from harness.predict import predict_prompting
    from harness.prompts import answers, render_input
    from harness.regimes.answer_scores import AnswerScorer, batch_answers, encode_answers

    task, draw, test, _, _ = _data(k=4)
    template = load_template(task, "cloze")
    data = fit_data(draw, test, task, Cell("toy", "cloze", "prompt-ft", 4, 13))
    before = _state(loaded.model)
    rows = [encode_answers(loaded.tokenizer, render_input(template, e), answers(template), 256) for e in data.train]

    def gold_margin(lm):
        batch, mask = batch_answers(rows, loaded.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            scores = AnswerScorer(lm).eval()(batch, mask)
        gold = torch.tensor([e.label for e in data.train])
        return (scores[torch.arange(len(gold)), gold] - scores[torch.arange(len(gold)), 1 - gold]).mean().item()

    run = _run(loaded, "prompt-ft", _prompt_ft_settings(max_steps=12, eval_every=12), k=4)
    assert _same(before, loaded.model.state_dict())
    with run.deployed(loaded.model) as trained:
        assert trained is not loaded.model and gold_margin(trained) > gold_margin(loaded.model) + 0.1
        again = predict_prompting(trained, loaded.tokenizer, loaded.max_length, template, data.test, (), 4)
    assert [p.scores for p in run.predictions] == [p.scores for p in again.predictions]
    assert run.details["selection"]["chosen"] == {"learning_rate": 3e-3}


def test_prompt_ft_runs_through_eval(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "prompt-ft",
                                     "--k", "2", "--seeds", "13", "--prompt-ft-max-steps", "2", "--batch-size", "4",
                                     "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cell = json.loads(next(tmp_path.rglob("prompt-ft_k2_seed13.json")).read_text())
    assert cell["settings"]["max_steps"] == 2 and cell["cost"]["trainable_parameters"] > 0
    rows = [json.loads(r) for r in next(tmp_path.rglob("prompt-ft_k2_seed13.jsonl")).read_text().splitlines()]
    assert len(rows[0]["loglik"]) == 2  # scored as zero-shot: the answers' log-likelihoods are kept


def test_scratch_starts_from_a_seeded_random_init_not_the_pretrained_weights(toy_env, model, tokenizer):
    from harness.regimes.scratch import ScratchSettings
    from harness.regimes.sources import FRESH

    cfg = ScratchSettings()
    first, again, other = (dict(FRESH.build(model, False, cfg, seed).named_parameters()) for seed in (13, 13, 21))
    pretrained = dict(model.model.named_parameters())
    weights = [k for k in first if k.endswith("weight") and "norm" not in k]
    assert all(not torch.equal(first[k], pretrained[k]) for k in weights)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in weights)


def test_scratch_and_tfidf_run_through_eval(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "scratch,tfidf",
                                  "--k", "4", "--seeds", "13", "--scratch-max-steps", "2", "--batch-size", "4",
                                  "--head-init", "probe", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scratch = json.loads(next(tmp_path.rglob("scratch_k4_seed13.json")).read_text())
    assert scratch["settings"]["learning_rates"] == [3e-4] and "head_init" not in scratch["settings"]  # no pretrained rows
    tfidf = json.loads(next(tmp_path.rglob("tfidf_k4_seed13.json")).read_text())
    assert tfidf["vocabulary"] > 0 and tfidf["selection"]["chosen"]["C"] in [g["C"] for g in tfidf["selection"]["grid"]]
    assert tfidf["cost"]["stored_bytes_per_task"] == 8 * (tfidf["cost"]["trainable_parameters"] + tfidf["vocabulary"])
    assert set(tfidf["train_ids"]) == set(scratch["train_ids"])  # the same k examples


def test_tfidf_equals_scikit_learn_fitted_by_hand(toy_env):
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from harness.prompts import render_input
    from harness.regimes.tfidf import Tfidf, TfidfSettings

    task, draw, test, _, _ = _data(k=4)
    template = load_template(task, "cloze")
    data = fit_data(draw, test, task, Cell("toy", "cloze", "tfidf", 4, 13))
    run = Tfidf().run(None, None, template, data, TfidfSettings(c_grid=(0.1, 10.0)), False)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vectorizer.fit_transform([render_input(template, e) for e in data.train])
    clf = LogisticRegression(C=run.details["selection"]["chosen"]["C"], max_iter=2000).fit(x, [e.label for e in data.train])
    expected = clf.predict_proba(vectorizer.transform([render_input(template, e) for e in data.test]))
    assert np.allclose([p.probs for p in run.predictions], expected)


def test_lora_trains_the_adapter_only_and_never_the_base(toy_env, loaded):
    from harness.regimes.lora import LoraSettings

    model = loaded.model
    before = _state(model)
    run = _run(loaded, "lora", LoraSettings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(1e-2,), rank=2))
    assert _same(before, model.state_dict())
    with run.deployed(model) as deployed:
        trained = dict(deployed.model.named_parameters())
        adapters = {k: v for k, v in trained.items() if "lora_" in k}
        assert adapters and all(v.requires_grad for v in adapters.values())
        assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # B starts at 0: it moved
        frozen = {k: v for k, v in trained.items() if "lora_" not in k}
        assert frozen and not any(v.requires_grad for v in frozen.values())
        for name, value in frozen.items():  # the copy's own weights are the base model's
            assert torch.equal(value, before["model." + name.replace(".base_layer", "")])
    head = 2 * (32 + 1)
    assert run.cost.trainable_parameters == sum(v.numel() for v in adapters.values()) + head


def test_a_lora_target_the_model_lacks_is_one_line_listing_its_linear_modules(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "lora", "--k", "2",
                                  "--seeds", "13", "--lora-targets", "c_attn", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--lora-targets c_attn: the model has no such linear module (its linear modules: " in result.output
    assert "q_proj" in result.output and "Traceback" not in result.output


def test_prompt_based_lora_trains_the_adapter_on_the_answer_scores(patched, tmp_path, model):
    before = _state(model)
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "lora,zero-shot",
                                  "--lora-scoring", "prompt", "--k", "2", "--seeds", "13", "--lora-max-steps", "4",
                                  "--lora-learning-rates", "0.05", "--lora-rank", "2", "--batch-size", "4",
                                  "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _same(before, model.state_dict())
    cell = json.loads(next(tmp_path.rglob("lora-prompt-r2_k2_seed13.json")).read_text())
    # rank-2 A and B on every linear projection of the blocks (q, k, v, o, gate, up, down), no head
    shapes = [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)]
    adapters = 2 * sum(2 * (i + o) for i, o in shapes)
    assert cell["cost"]["trainable_parameters"] == adapters
    assert cell["cost"]["total_parameters"] == adapters + sum(p.numel() for p in model.parameters())
    rows = [json.loads(r) for r in next(tmp_path.rglob("lora-prompt-r2_k2_seed13.jsonl")).read_text().splitlines()]
    untouched = [json.loads(r) for r in next(tmp_path.rglob("zero-shot_k0.jsonl")).read_text().splitlines()]
    assert len(rows[0]["loglik"]) == 2  # scored as zero-shot
    assert any(a["loglik"] != pytest.approx(b["loglik"]) for a, b in zip(rows, untouched))  # the adapter moved them


def test_ia3_trains_its_rescaling_vectors_only_and_never_the_base(toy_env, loaded):
    from harness.regimes.ia3 import Ia3Settings

    model = loaded.model
    before = _state(model)
    run = _run(loaded, "ia3", Ia3Settings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(5e-2,)))
    assert _same(before, model.state_dict())
    with run.deployed(model) as deployed:
        trained = dict(deployed.model.named_parameters())
        vectors = {k: v for k, v in trained.items() if "ia3_" in k}
        # keys, values and the feed-forward output of each block (peft's Llama targets), one vector each
        assert sorted({k.split(".")[-3] for k in vectors}) == ["down_proj", "k_proj", "v_proj"]
        assert all(v.requires_grad for v in vectors.values()) and any((v != 1).any() for v in vectors.values())
        frozen = {k: v for k, v in trained.items() if "ia3_" not in k}
        assert not any(v.requires_grad for v in frozen.values())
        for name, value in frozen.items():
            assert torch.equal(value, before["model." + name.replace(".base_layer", "")])
    assert run.cost.trainable_parameters == sum(v.numel() for v in vectors.values()) + 2 * (32 + 1)


def test_ia3_on_the_answer_scores_runs_through_eval(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "ia3",
                                  "--ia3-scoring", "prompt", "--k", "2", "--seeds", "13", "--ia3-max-steps", "2",
                                  "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cell = json.loads(next(tmp_path.rglob("ia3-prompt_k2_seed13.json")).read_text())
    # per block: k (16) and v (16) outputs, and down_proj's input (64): no head
    assert cell["cost"]["trainable_parameters"] == 2 * (16 + 16 + 64)


def test_early_stopping_can_stop_records_why_and_flags_the_first_evaluation(toy_env, loaded):
    """A learning rate too small to move any weight: dev never improves after the first check, so patience 1 stops
    the run at the second check (not before min_steps), and the selection says so."""
    settings = FullSettings(max_steps=12, batch_size=4, eval_every=1, patience=1, learning_rates=(1e-30,))
    run = _run(loaded, "full", dataclasses_replace(settings, head_learning_rate=1e-30))
    selection = run.details["selection"]
    assert selection["stopped"] == "plateau" and selection["steps"] == 2 and selection["best_step"] == 1
    assert selection["configurations"] == 2  # one learning rate x two dev checks
    assert any("the best dev checkpoint is the first evaluation (step 1 of 2)" in w for w in run.details["warnings"])
    later = _run(loaded, "full", dataclasses_replace(settings, head_learning_rate=1e-30, min_steps=6))
    assert later.details["selection"]["steps"] == 6 and later.details["selection"]["stopped"] == "plateau"
    full = _run(loaded, "full", FAST_FULL)  # 4 steps, dev every 2, patience 2: the earliest stop is step 6
    assert full.details["selection"]["stopped"] == "max_steps"
    assert any("early stopping could not stop (earliest stop at step 6, budget 4 steps)" in w
               for w in full.details["warnings"])


def dataclasses_replace(settings, **changes):
    import dataclasses

    return dataclasses.replace(settings, **changes)


def test_packed_rows_give_the_padded_loss_and_gradients(toy_env, loaded):
    """--<regime>-pack: one row, no padding, a block-diagonal mask, positions restarting: the same loss and gradients
    as right-padded rows, up to float rounding (and no pad token is computed)."""
    from harness.regimes.classifier import SequenceClassifier, new_head
    from harness.regimes.sources import PRETRAINED
    from harness.regimes.training import pack_rows, pad_rows

    task, draw, test, texts, labels = _data(k=4)
    ids = [list(x) for x in loaded.tokenizer(texts["train"], truncation=True, max_length=256)["input_ids"]]
    settings = FullSettings()
    losses, grads = {}, {}
    for how in ("padded", "packed"):
        torch.manual_seed(0)
        module = PRETRAINED.build(loaded.model, False, settings, 13)
        head = new_head(None, None, 32, 2, "zero", None, 0.02, "cpu")
        classifier = SequenceClassifier(PRETRAINED.body(loaded.model, module), module, head, "last")
        batch, mask = pack_rows(ids, "cpu") if how == "packed" else pad_rows(ids, 0, "cpu")
        loss = torch.nn.functional.cross_entropy(classifier(batch, mask), torch.tensor(labels["train"]))
        loss.backward()
        losses[how] = loss.item()
        grads[how] = {n: p.grad.clone() for n, p in classifier.named_parameters() if p.grad is not None}
        if how == "packed":
            assert mask.numel() == sum(len(r) for r in ids)  # every position is a real token
    assert losses["packed"] == pytest.approx(losses["padded"], abs=1e-6)
    assert grads["packed"].keys() == grads["padded"].keys()
    for name in grads["padded"]:
        assert torch.allclose(grads["packed"][name], grads["padded"][name], atol=1e-6), name


def test_packed_answer_scores_give_the_padded_loss_and_gradients(toy_env, loaded):
    """prompt-ft with --pack: the answer-score loss and its gradients equal the padded rows' (float rounding)."""
    from harness.prompts import answers, load_template
    from harness.regimes.answer_scores import AnswerScorer, batch_answers, encode_answers

    task, draw, test, texts, labels = _data(k=4)
    template = load_template(task, "cloze")
    choices = tuple(answers(template))
    scored = [encode_answers(loaded.tokenizer, text, choices, 256) for text in texts["train"]]
    losses, grads = {}, {}
    for pack in (False, True):
        loaded.model.zero_grad()
        batch, mask = batch_answers(scored, 0, "cpu", pack)
        scores = AnswerScorer(loaded.model)(batch, mask)
        loss = torch.nn.functional.cross_entropy(scores, torch.tensor(labels["train"]))
        loss.backward()
        losses[pack] = loss.item()
        grads[pack] = {n: p.grad.clone() for n, p in loaded.model.named_parameters() if p.grad is not None}
        if pack:
            assert mask.numel() == sum(len(r) for s in scored for r in s.rows)  # no pad position computed
    loaded.model.zero_grad()
    assert losses[True] == pytest.approx(losses[False], abs=1e-6)
    assert grads[True].keys() == grads[False].keys() and grads[False]
    for name in grads[False]:
        assert torch.allclose(grads[True][name], grads[False][name], atol=1e-6), name


def test_packed_training_runs_through_eval(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "full,lora,prompt-ft",
                                  "--k", "2", "--seeds", "13", "--pack", "--full-max-steps", "2",
                                  "--lora-max-steps", "2", "--prompt-ft-max-steps", "2", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cell = json.loads(next(tmp_path.rglob("full_k2_seed13.json")).read_text())
    assert cell["settings"]["pack"] is True and cell["config"]["settings"]["pack"] is True
    assert cell["padding_fraction"] == 0.0
    assert json.loads(next(tmp_path.rglob("prompt-ft_k2_seed13.json")).read_text())["padding_fraction"] == 0.0


def test_bitfit_trains_the_norms_and_biases_only_and_never_the_base(toy_env, loaded):
    from harness.regimes.bitfit import BitfitSettings

    model = loaded.model
    before = _state(model)
    run = _run(loaded, "bitfit", BitfitSettings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(5e-2,)))
    assert _same(before, model.state_dict())
    with run.deployed(model) as deployed:
        trained = dict(deployed.model.named_parameters())
        changed = {k for k, v in trained.items() if not torch.equal(v, before[f"model.{k}"])}
    assert changed and all("norm" in k for k in changed)  # the tiny Llama has no biases: its norms alone moved
    norms = sum(v.numel() for k, v in trained.items() if "norm" in k)
    assert run.cost.trainable_parameters == norms + 2 * (32 + 1)


def test_a_list_of_lora_ranks_gives_one_variant_each(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "lora", "--k", "2",
                                  "--seeds", "13", "--lora-rank", "1,8,16", "--lora-max-steps", "1",
                                  "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.rglob("lora*.json"))
    assert names == ["lora-r16_k2_seed13.json", "lora-r1_k2_seed13.json", "lora_k2_seed13.json"]
    trainable = {p.name: json.loads(p.read_text())["cost"]["trainable_parameters"] for p in tmp_path.rglob("lora*.json")}
    assert trainable["lora-r1_k2_seed13.json"] < trainable["lora_k2_seed13.json"] < trainable["lora-r16_k2_seed13.json"]


def test_l2sp_penalty_is_zero_at_the_start_and_pulls_toward_the_pretrained_weights(toy_env, loaded):
    from harness.regimes.mitigation import l2sp_penalty

    model = loaded.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    settings = dataclasses_replace(FAST_FULL, learning_rates=(1e-2,), max_steps=6)
    plain = _run(loaded, "full", settings)
    held = _run(loaded, "full", dataclasses_replace(settings, mitigation="l2sp", mitigation_strengths=(1e4,)))
    assert held.details["selection"]["chosen"] == {"learning_rate": 1e-2, "mitigation_strength": 1e4}

    def distance(run):
        with run.deployed(model) as deployed:
            return sum(((p - base[f"model.{n}"]) ** 2).sum().item() for n, p in deployed.model.named_parameters())

    assert distance(held) < 0.1 * distance(plain)  # much closer to the pretrained weights
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.items())
    from harness.regimes.classifier import SequenceClassifier, new_head
    from harness.regimes.sources import PRETRAINED

    module = PRETRAINED.build(model, False, settings, 13)
    classifier = SequenceClassifier(PRETRAINED.body(model, module), module, new_head(None, None, 32, 2, "zero", None,
                                                                                       0.02, "cpu"), "last")
    assert l2sp_penalty(classifier, 5.0)().item() == 0.0  # at the pretrained weights


def test_a_mitigation_is_a_variant_of_every_backbone_adapting_regime(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "full,lora,head",
                                  "--unfreeze-top", "1", "--k", "2", "--seeds", "13", "--mitigation", "l2sp",
                                  "--mitigation-strengths", "0.1", "--full-max-steps", "1", "--lora-max-steps", "1",
                                  "--head-max-steps", "1", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.rglob("*.json") if p.name != "run.json")
    assert names == ["full-l2sp_k2_seed13.json", "head-top1-l2sp_k2_seed13.json", "lora-l2sp_k2_seed13.json"]


@pytest.mark.parametrize("regime", ["prompt-tuning", "prefix"])
def test_a_soft_prompt_trains_its_virtual_tokens_only_and_never_the_base(toy_env, loaded, regime):
    from harness.regimes.soft_prompt import SoftPromptSettings

    model = loaded.model
    before = _state(model)
    run = _run(loaded, regime, SoftPromptSettings(max_steps=4, batch_size=4, eval_every=2, virtual_tokens=3,
                                                  learning_rates=(5e-2,)))
    assert _same(before, model.state_dict())  # the base is bit-identical
    config = model.config
    kv = config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    per_token = (config.hidden_size if regime == "prompt-tuning"
                 else 2 * config.num_hidden_layers * kv)  # peft's prefix: a key and a value per layer (GQA's width)
    assert run.cost.trainable_parameters == 3 * per_token
    assert all(0 <= p <= 1 for pred in run.predictions for p in pred.probs)
    assert not get_regime(regime).adapts_backbone  # forgetting is not measured: nothing of the base changes


def test_prompt_tuning_starts_from_the_template_words_and_changes_the_scores(toy_env, loaded):
    """Virtual tokens set to the template's own words' embeddings; the scorer reads the real tokens after them."""
    import copy

    from peft import PromptTuningConfig, TaskType, get_peft_model

    from harness.regimes.answer_scores import AnswerScorer, batch_answers, encode_answers
    from harness.regimes.virtual_tokens import initialise_from_text, template_words

    template = load_template(load_task("toy"), "cloze")
    words = template_words(template)
    assert words and "{" not in words
    peft_model = get_peft_model(copy.deepcopy(loaded.model), PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                                                num_virtual_tokens=4))
    initialise_from_text(peft_model, loaded.tokenizer, words)
    ids = (loaded.tokenizer(words, add_special_tokens=False)["input_ids"] * 4)[:4]
    expected = loaded.model.get_input_embeddings()(torch.tensor(ids))
    assert torch.equal(peft_model.get_prompt(batch_size=1)[0], expected)
    task, draw, test, texts, labels = _data(k=2)
    scored = [encode_answers(loaded.tokenizer, t, tuple(answers(template)), 256) for t in texts["train"]]
    batch, mask = batch_answers(scored, 0, "cpu")
    with torch.no_grad():
        plain = AnswerScorer(loaded.model).eval()(batch, mask)
        prompted = AnswerScorer(peft_model).eval()(batch, mask)
    assert AnswerScorer(peft_model).virtual_tokens == 4 and not torch.allclose(plain, prompted)
    from peft import PrefixTuningConfig

    prefixed = get_peft_model(copy.deepcopy(loaded.model), PrefixTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                                              num_virtual_tokens=4))
    with torch.no_grad():  # the keys and values reach every layer's attention
        assert not torch.allclose(plain, AnswerScorer(prefixed).eval()(batch, mask))


def test_ewc_penalty_is_zero_at_the_pretrained_weights_and_weighs_by_the_fisher(toy_env, loaded):
    from harness.regimes.classifier import SequenceClassifier, new_head
    from harness.regimes.mitigation import _weighted_distance, diagonal_fisher, general_text_ids
    from harness.regimes.sources import PRETRAINED

    model = loaded.model
    module = PRETRAINED.build(model, False, FullSettings(), 13)
    classifier = SequenceClassifier(PRETRAINED.body(model, module), module,
                                    new_head(None, None, 32, 2, "zero", None, 0.02, "cpu"), "last")
    texts = general_text_ids(loaded.tokenizer)[:4]
    fisher = diagonal_fisher(classifier, loaded, texts)
    total = sum(f.sum() for f in fisher) / sum(f.numel() for f in fisher)
    assert total.item() == pytest.approx(1.0) and all((f >= 0).all() for f in fisher)
    penalty = _weighted_distance(classifier, 2.0, fisher)
    assert penalty().item() == 0.0  # at the pretrained weights
    trained = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        trained[0] += 0.1
    expected = 2.0 / 2 * (fisher[0] * 0.01).sum().item()
    assert penalty().item() == pytest.approx(expected, rel=1e-4)


def test_replay_text_is_general_text_never_an_evaluation_split(toy_env, loaded):
    """Replay and EWC read the text task's train split: disjoint from the test-split text --forgetting measures,
    and from every test split."""
    from harness.general_text import TEXT_TASK, article_texts
    from harness.regimes.mitigation import general_text_ids

    replayed = {tuple(ids) for ids in general_text_ids(loaded.tokenizer)}
    task = load_task(TEXT_TASK)
    test_texts = [title + body for title, body in article_texts("test", None, characters=10**9)]
    measured = {tuple(ids) for ids in loaded.tokenizer(test_texts, truncation=True, max_length=128)["input_ids"]}
    assert replayed and not replayed & measured
    test_bodies = {" ".join(e.fields[task.input_fields[-1]].split())[:200] for e in load_examples(task, "test", None)}
    assert not any(body[:200] in test_bodies for _, body in article_texts("train", None))


@pytest.mark.parametrize("mitigation", ["ewc", "replay"])
def test_ewc_and_replay_train_full_and_prompt_ft_and_are_chosen_on_dev(patched, tmp_path, mitigation):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "full,prompt-ft",
                                  "--k", "2", "--seeds", "13", "--mitigation", mitigation, "--mitigation-strengths",
                                  "0.1,1", "--full-max-steps", "2", "--prompt-ft-max-steps", "2",
                                  "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for regime in ("full", "prompt-ft"):
        cell = json.loads(next(tmp_path.rglob(f"{regime}-{mitigation}_k2_seed13.json")).read_text())
        assert cell["selection"]["chosen"]["mitigation_strength"] in (0.1, 1.0)
        assert len(cell["selection"]["runs"]) == 2  # one learning rate x two strengths
        edge = [w for w in cell["warnings"] if w.startswith("mitigation strength")]  # either value is an edge
        assert edge == [f"mitigation strength = {cell['selection']['chosen']['mitigation_strength']:g} is on the edge "
                        f"of the grid (0.1 .. 1)"]


def test_replay_and_ewc_refuse_a_head_on_cached_features(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "head",
                                  "--unfreeze-top", "1", "--k", "2", "--seeds", "13", "--mitigation", "ewc",
                                  "--head-max-steps", "1", "--out", str(tmp_path)])
    assert "use --mitigation l2sp" in result.output and "Traceback" not in result.output
