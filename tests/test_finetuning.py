import json

import pytest
import torch
from click.testing import CliRunner

import harness.models
from harness.cells import draw_for, fit_data
from harness.cli import cli
from harness.prompts import load_template
from harness.truncation import render_splits
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.full import FullSettings
from harness.regimes.full_fit import fit_full
from harness.regimes.head import HeadSettings
from harness.regimes.head_fit import fit_head
from harness.regimes.training import length_grouped_batches, padding_fraction
from harness.tasks import load_examples, load_task
from harness.types import Cell
from tiny import tiny_tokenizer

FAST_FULL = FullSettings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(1e-3,))


def _data(seed=13, k=2, tokenizer=None):
    task = load_task("toy")
    template = load_template(task, "cloze")
    draw = draw_for(Cell("toy", "cloze", "head", k, seed), get_regime("head"), HeadSettings(), 1,
                    load_examples(task, "train"), [], task)
    test = load_examples(task, "test")
    texts, labels = render_splits(template, fit_data(draw, test, task), tokenizer or tiny_tokenizer(), 256)
    return task, draw, test, texts, labels


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("top", [0, 1])
def test_head_trains_and_leaves_the_backbone_bit_identical(toy_env, model, tokenizer, top):
    _, _, test, texts, labels = _data()
    before = _state(model)
    store = FeatureStore(model, tokenizer)
    fit = fit_head(model, store, texts, labels, 2, [5, 6], HeadSettings(unfreeze_top=top, top_steps=4), 13)
    assert _same(before, model.state_dict())
    assert len(fit.probs) == len(test) and all(abs(sum(p) - 1) < 1e-5 for p in fit.probs)
    assert ("top_learning_rate" if top else "C") in fit.details["selection"]["chosen"]
    if top:
        trained = dict(fit.trained.modules_trained.named_parameters())
        base = dict(model.model.layers[-1].named_parameters())
        assert any(not torch.equal(trained[f"layers.0.{k}"], v) for k, v in base.items())


def test_head_features_are_computed_once_per_input(toy_env, model, tokenizer):
    _, _, _, texts, labels = _data()
    store = FeatureStore(model, tokenizer)
    fit_head(model, store, texts, labels, 2, None, HeadSettings(c_grid=(0.1, 1.0)), 13)
    after_first = store.tokens_run
    fit_head(model, store, texts, labels, 2, None, HeadSettings(c_grid=(0.1, 1.0)), 21)
    assert after_first > 0 and store.tokens_run == after_first


def test_verbalizer_init_starts_from_the_lm_head_rows(toy_env, model, tokenizer):
    from harness.regimes.training import init_weights

    weight, bias = init_weights(model.get_output_embeddings(), [7, 9], 32, 2, "verbalizer")
    assert torch.equal(weight, model.lm_head.weight[[7, 9]]) and torch.equal(bias, torch.zeros(2))
    zero, _ = init_weights(model.get_output_embeddings(), [7, 9], 32, 2, "zero")
    assert not zero.any()


def test_probe_equals_scikit_learn_fitted_by_hand(toy_env, model, tokenizer):
    """head's predictions are StandardScaler (train statistics) + LogisticRegression at the dev-chosen C."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    _, _, _, texts, labels = _data(k=4)
    store = FeatureStore(model, tokenizer)
    grid = (1e-3, 1e-1, 10.0)
    fit = fit_head(model, store, texts, labels, 2, None, HeadSettings(c_grid=grid), 13)
    chosen = fit.details["selection"]
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
    assert np.allclose(fit.probs, expected, atol=1e-8)
    assert bool(fit.details["warnings"]) == (best in (0, 2))  # a choice on the grid's edge is flagged


def test_lp_ft_starts_from_the_probes_weights(toy_env, model, tokenizer):
    """--head-init probe: before any step, full's classifier gives the probe's probabilities."""
    from harness.regimes.full_fit import _build, _encode, _pad
    from harness.regimes.head_fit import train_probe

    _, _, _, texts, labels = _data(k=4)
    store = FeatureStore(model, tokenizer)
    cfg = FullSettings(head_init="probe", c_grid=(0.01, 1.0))
    probe = train_probe(store, texts, labels, 2, cfg)
    classifier = _build(model, None, 2, cfg, probe).eval()
    ids, mask = _pad(_encode(tokenizer, texts["test"], 256), tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        start = torch.softmax(classifier(ids, mask), -1).numpy()
    expected = probe.probabilities(store.pooled(texts["test"], "last", 256, 16).numpy())
    assert abs(start - expected).max() < 1e-4


def test_budget_warnings_name_the_edge_and_the_last_step():
    from harness.regimes.training import budget_warnings

    assert budget_warnings("learning rate", (1e-5, 1e-4), 1e-4, 50, 1000, 1000)[0].startswith("learning rate = 0.0001 is on")
    assert "last step (1000 of 1000)" in budget_warnings("lr", (1e-5,), 1e-5, 1000, 1000, 1000)[0]
    assert budget_warnings("lr", (1e-5, 2e-5, 1e-4), 2e-5, 300, 550, 1000) == []  # stopped early, inside the grid


def test_full_trains_a_copy_and_never_the_base(toy_env, model, tokenizer):
    _, _, test, texts, labels = _data()
    before = _state(model)
    fit = fit_full(model, tokenizer, FeatureStore(model, tokenizer), texts, labels, 2, None, FAST_FULL, 13)
    assert _same(before, model.state_dict())
    trained = dict(fit.trained.modules_trained.named_parameters())
    assert any(not torch.equal(trained[k], v) for k, v in model.model.named_parameters())
    assert len(fit.probs) == len(test) and fit.train_steps == 4
    assert fit.details["selection"]["chosen"] == {"learning_rate": 1e-3}


def test_same_seed_same_results(toy_env, model, tokenizer):
    _, _, _, texts, labels = _data()
    a = fit_full(model, tokenizer, FeatureStore(model, tokenizer), texts, labels, 2, None, FAST_FULL, 13)
    torch.rand(7)  # whatever the process drew before a cell does not change it (the new head's start is seeded)
    b = fit_full(model, tokenizer, FeatureStore(model, tokenizer), texts, labels, 2, None, FAST_FULL, 13)
    assert a.probs == b.probs


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
    import harness.regimes.full_fit as full_fit

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(full_fit, "fit_full", boom)
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--regimes", "zero-shot,full", "--k", "2", "--seeds",
                                  "13", "--templates", "cloze", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "ran out of memory" in result.output and "--batch-size" in result.output
    assert next(tmp_path.rglob("zero-shot_k0.json")).is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "9", "--regimes", "head"], "plus a dev set"),
        (["--pooling", "max"], "unknown pooling 'max'"),
        (["--head-init", "random"], "unknown head init 'random'"),
        (["--unfreeze-top", "-1"], "--unfreeze-top must be 0 or more"),
        (["--k", "five"], "--k must be comma-separated positive integers or 'all'"),
        (["--k", "full"], "--k must be comma-separated positive integers or 'all'"),
        (["--k", "-5"], "--k must be comma-separated positive integers or 'all'"),
        (["--regimes", "head,qlora"], "unknown regime 'qlora' (known: zero-shot, few-shot, head, full, prompt-ft, lora, scratch, tfidf)"),
    ],
)
def test_fine_tuning_bad_input(patched, tmp_path, args, message):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_full_defaults_picks_another_device_kinds_settings(patched, tmp_path):
    args = ["eval", "--tasks", "toy", "--regimes", "full", "--k", "2", "--seeds", "13", "--templates", "cloze",
            "--full-max-steps", "2"]
    runs = {}
    for kind in ("cpu", "cuda"):
        result = patched.invoke(cli, [*args, "--full-defaults", kind, "--out", str(tmp_path / kind)])
        assert result.exit_code == 0, result.output
        runs[kind] = json.loads(next((tmp_path / kind).rglob("full_k2_seed13.json")).read_text())["settings"]
    assert (runs["cpu"]["batch_size"], runs["cpu"]["eval_every"], runs["cpu"]["patience"]) == (8, 8, 2)
    assert (runs["cuda"]["batch_size"], runs["cuda"]["eval_every"], runs["cuda"]["patience"]) == (8, 50, 5)
    assert runs["cpu"]["max_steps"] == runs["cuda"]["max_steps"] == 2


def test_changing_full_defaults_in_the_same_out_is_refused(patched, tmp_path):
    """The hash covers the resolved settings, not what was typed: cpu and cuda defaults are two configurations."""
    args = ["eval", "--tasks", "toy", "--regimes", "full", "--k", "2", "--seeds", "13", "--templates", "cloze",
            "--limit", "3", "--out", str(tmp_path)]
    first = patched.invoke(cli, [*args, "--full-defaults", "cpu"])
    assert first.exit_code == 0, first.output
    again = patched.invoke(cli, [*args, "--full-defaults", "cpu"])
    assert "0 cells computed, 1 found on disk" in again.output
    other = patched.invoke(cli, [*args, "--full-defaults", "cuda"])
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
    from harness.regimes.prompt_ft_fit import AnswerScorer, _batch, _scored
    from harness.regimes.prompting import predict_prompting

    task, draw, _, _, _ = _data(k=4)
    for name in ("cloze", "plain"):
        template = load_template(task, name)
        rows = [_scored(loaded.tokenizer, render_input(template, e), answers(template), 256) for e in draw.train]
        assert all(len(r.rows) == (1 if name == "cloze" else 2) for r in rows)
        batch, mask = _batch(rows, loaded.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            mine = AnswerScorer(loaded.model).eval()(batch, mask)
        zero = predict_prompting(loaded.model, loaded.tokenizer, loaded.max_length, template, draw.train, (), 4)
        assert torch.allclose(mine, torch.tensor([p.scores for p in zero.predictions]), atol=1e-4)


def test_prompt_ft_moves_the_verbalizer_scores_and_scores_as_zero_shot(toy_env, loaded):
    """Training raises the gold answer's log-likelihood on the training inputs; the base LM is untouched; the
    test predictions are the zero-shot scorer's on the trained copy."""
    from harness.prompts import answers, render_input
    from harness.regimes.prompt_ft_fit import AnswerScorer, _batch, _scored, fit_prompt_ft
    from harness.regimes.prompting import predict_prompting

    task, draw, test, _, _ = _data(k=4)
    template = load_template(task, "cloze")
    data = fit_data(draw, test, task)
    before = _state(loaded.model)
    rows = [_scored(loaded.tokenizer, render_input(template, e), answers(template), 256) for e in data.train]

    def gold_margin(lm):
        batch, mask = _batch(rows, loaded.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            scores = AnswerScorer(lm).eval()(batch, mask)
        gold = torch.tensor([e.label for e in data.train])
        return (scores[torch.arange(len(gold)), gold] - scores[torch.arange(len(gold)), 1 - gold]).mean().item()

    fit = fit_prompt_ft(loaded, template, data, _prompt_ft_settings(max_steps=12, eval_every=12), 13)
    assert _same(before, loaded.model.state_dict())
    trained = fit.trained.modules_trained
    assert gold_margin(trained) > gold_margin(loaded.model) + 0.1
    again = predict_prompting(trained, loaded.tokenizer, loaded.max_length, template, data.test, (), 4)
    assert [p.scores for p in fit.predictions(data.test)] == [p.scores for p in again.predictions]
    assert fit.details["selection"]["chosen"] == {"learning_rate": 3e-3}


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
    from harness.regimes.full_fit import _build
    from harness.regimes.scratch import ScratchSettings

    cfg = ScratchSettings()
    first, again, other = (_build(model, None, 2, cfg, None, seed) for seed in (13, 13, 21))
    pretrained = dict(model.model.named_parameters())
    fresh = dict(first.modules_trained.named_parameters())
    weights = [k for k in fresh if k.endswith("weight") and "norm" not in k]
    assert all(not torch.equal(fresh[k], pretrained[k]) for k in weights)
    assert all(torch.equal(fresh[k], dict(again.modules_trained.named_parameters())[k]) for k in fresh)
    assert any(not torch.equal(fresh[k], dict(other.modules_trained.named_parameters())[k]) for k in weights)


def test_scratch_and_tfidf_run_through_eval(patched, tmp_path):
    result = patched.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--regimes", "scratch,tfidf",
                                  "--k", "4", "--seeds", "13", "--scratch-max-steps", "2", "--batch-size", "4",
                                  "--head-init", "probe", "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scratch = json.loads(next(tmp_path.rglob("scratch_k4_seed13.json")).read_text())
    assert scratch["settings"]["learning_rates"] == [3e-4] and scratch["settings"]["head_init"] == "zero"
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
    data = fit_data(draw, test, task)
    run = Tfidf().run(None, None, template, data, TfidfSettings(c_grid=(0.1, 10.0)), 13, False)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vectorizer.fit_transform([render_input(template, e) for e in data.train])
    clf = LogisticRegression(C=run.details["selection"]["chosen"]["C"], max_iter=2000).fit(x, [e.label for e in data.train])
    expected = clf.predict_proba(vectorizer.transform([render_input(template, e) for e in data.test]))
    assert np.allclose([p.probs for p in run.predictions], expected)


def test_lora_trains_the_adapter_only_and_never_the_base(toy_env, model, tokenizer):
    from harness.regimes.lora import LoraSettings
    from harness.regimes.lora_fit import add_lora

    _, _, test, texts, labels = _data()
    before = _state(model)
    cfg = LoraSettings(max_steps=4, batch_size=4, eval_every=2, learning_rates=(1e-2,), rank=2)
    fit = fit_full(model, tokenizer, FeatureStore(model, tokenizer), texts, labels, 2, None, cfg, 13,
                   adapter=lambda backbone: add_lora(backbone, cfg))
    assert _same(before, model.state_dict())
    trained = dict(fit.trained.modules_trained.named_parameters())
    adapters = {k: v for k, v in trained.items() if "lora_" in k}
    assert adapters and all(v.requires_grad for v in adapters.values())
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # B starts at 0: it moved
    frozen = {k: v for k, v in trained.items() if "lora_" not in k}
    assert frozen and not any(v.requires_grad for v in frozen.values())
    for name, value in frozen.items():  # the copy's own weights are the base model's
        assert torch.equal(value, model.model.get_parameter(name.replace("base_model.model.", "").replace(".base_layer", "")))
    head = 2 * (32 + 1)
    assert fit.trainable_parameters == sum(v.numel() for v in adapters.values()) + head


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
