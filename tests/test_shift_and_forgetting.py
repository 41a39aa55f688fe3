"""Domain shift (--eval-tasks) and forgetting (--forgetting) on the toy tasks and the tiny model."""

import copy
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import harness.models
from harness.cells import draw_for, fit_data
from harness.cli import cli
from harness.backbone import decoder_swapped
from harness.prompts import load_template
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.protocol import Device, Shared
from harness.shift import shift_view
from harness.tasks import load_examples, load_task
from tiny import tiny_model


@pytest.fixture
def runner(toy_env, loaded, monkeypatch):
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    return CliRunner()


def _eval(runner, out, *args, ok=True):
    result = runner.invoke(cli, ["eval", "--tasks", "toy", "--templates", "cloze", "--seeds", "13", "--k", "2",
                                 "--limit", "all", "--out", str(out), *args])
    assert (result.exit_code == 0) == ok, result.output
    return result


def _cell(out, stem):
    return json.loads(next(Path(out).rglob(f"{stem}.json")).read_text())


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("regime", ["head", "few-shot"])
def test_shift_predictions_equal_the_trained_cell_run_on_the_target_inputs(runner, tmp_path, loaded, regime):
    _eval(runner, tmp_path, "--regimes", regime, "--eval-tasks", "toy_shift")
    stem = f"{regime}_k2_seed13"
    cell = _cell(tmp_path, stem)
    shift = cell["shift"]["toy_shift"]
    assert shift["left_out"] == {"neutral": 2} and shift["n"] == 6
    assert shift["label_map"] == {"bad": "negative", "good": "positive"}
    rows = _rows(next(tmp_path.rglob(f"{stem}.shift.jsonl")))
    own = _rows(next(tmp_path.rglob(f"{stem}.jsonl")))
    assert len(rows) == 6 and all(r["id"].startswith("toy_shift::") for r in rows)
    assert len(own) == cell["n"] == 7 and not any("::" in r["id"] for r in own)
    assert shift["metrics"]["accuracy"] == pytest.approx(sum(r["pred"] == r["gold"] for r in rows) / 6)

    # the same cell run again with the mapped target examples as its test set gives the same predictions
    source, target = load_task("toy"), load_task("toy_shift")
    view = shift_view(source, target, load_examples(target, "test"))
    assert [e.fields for e in view.examples][0] == {"text": "great great acting"}
    r = get_regime(regime)
    settings = r.resolve({}, Device("cpu", "float32"))[0]
    template = load_template(source, "cloze")
    cell_spec = harness.types.Cell("toy", "cloze", regime, 2, 13)
    draw = draw_for(cell_spec, r, settings, 1, load_examples(source, "train"), [], source)
    alone = r.run(loaded, Shared(features=FeatureStore(loaded.model, loaded.tokenizer)), template,
                  fit_data(draw, view.examples, source, cell_spec), settings, False)
    expected = {p.id: p.probs for p in alone.predictions}
    for row in rows:
        assert row["probs"] == pytest.approx(expected[row["id"]], abs=1e-6)


def test_eval_tasks_whose_labels_do_not_map_is_one_line_naming_both(runner, tmp_path):
    result = _eval(runner, tmp_path, "--regimes", "head", "--eval-tasks", "toy_news", ok=False)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "--eval-tasks toy_news: its labels sport, politics, tech are not toy's labels (negative, positive)" in lines[0]
    assert not list(tmp_path.rglob("*.json"))  # refused before any compute


def test_a_label_map_to_an_unknown_source_label_names_the_file(toy_env, tmp_path):
    source = load_task("toy")
    target = load_task("toy_shift")
    broken = harness.types.ShiftMap({"bad": "awful"})
    target = harness.types.TaskSpec(**{**{f: getattr(target, f) for f in target.__slots__}, "domain_shift": {"toy": broken}})
    with pytest.raises(harness.errors.HarnessError, match="maps bad to 'awful', not one of toy's labels"):
        shift_view(source, target, load_examples(target, "test"))


def _forgetting(runner, out, *args):
    return _eval(runner, out, "--forgetting", "toy_shift,toy_news", "--forgetting-text", "toy_news", *args)


def _language_model_of_the_held_out_text(loaded, steps=60):
    """The tiny model trained as a language model on toy_news's texts: a random model has nothing to forget."""
    model = copy.deepcopy(loaded.model).train()
    texts = [f"{e.fields['title']}\n{e.fields['text']}" for e in load_examples(load_task("toy_news"), "test")]
    batch = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    return harness.models.LoadedModel(model=model.eval(), tokenizer=loaded.tokenizer, identity={"source": "test",
                                      "id": "tiny-lm"}, device="cpu", dtype="float32")


def test_forgetting_of_head_is_exactly_zero_and_of_an_overtrained_full_is_positive(runner, tmp_path, loaded,
                                                                                     monkeypatch):
    loaded = _language_model_of_the_held_out_text(loaded)
    monkeypatch.setattr(harness.models, "load_model", lambda *a, **k: loaded)
    before = copy.deepcopy(loaded.model.state_dict())
    _forgetting(runner, tmp_path, "--regimes", "head,full,zero-shot", "--full-learning-rates", "0.3",
                "--full-max-steps", "24", "--batch-size", "4")
    head = _cell(tmp_path, "head_k2_seed13")["forgetting"]
    assert head["nll_per_token"]["change"] == 0.0 and head["nll_per_token"]["ci95"] == [0.0, 0.0]
    assert {t: z["change"] for t, z in head["zero_shot"].items()} == {"toy_shift": 0.0, "toy_news": 0.0}
    assert head["nll_per_token"]["tokens"] > 0 and head["identity"]["text"]["sequences"] == 6
    full = _cell(tmp_path, "full_k2_seed13")["forgetting"]
    assert full["nll_per_token"]["before"] < 3.0  # it learnt the text (a random model: ~6.4 nats per token)
    assert full["nll_per_token"]["change"] > 0 and full["nll_per_token"]["ci95"][0] > 0
    assert "forgetting" not in _cell(tmp_path, "zero-shot_k0")  # prompting adapts nothing
    after = loaded.model.state_dict()  # measuring swapped the trained weights in and back out
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_forgetting_runs_for_lora_prompt_ft_and_unfrozen_blocks(runner, tmp_path, loaded):
    before = copy.deepcopy(loaded.model.state_dict())
    _forgetting(runner, tmp_path, "--regimes", "lora,prompt-ft,head", "--unfreeze-top", "1",
                "--lora-learning-rates", "0.05", "--lora-max-steps", "8", "--prompt-ft-learning-rates", "0.01",
                "--prompt-ft-max-steps", "8", "--batch-size", "4")
    for stem in ("lora_k2_seed13", "prompt-ft_k2_seed13", "head-top1_k2_seed13"):
        measured = _cell(tmp_path, stem)["forgetting"]
        assert measured["nll_per_token"]["change"] != 0.0, stem  # each changed what the LM computes
        assert set(measured["zero_shot"]) == {"toy_shift", "toy_news"}
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_finished_cell_without_the_asked_measurement_is_computed_again(runner, tmp_path):
    _eval(runner, tmp_path, "--regimes", "head")
    again = _eval(runner, tmp_path, "--regimes", "head", "--eval-tasks", "toy_shift")
    assert "computed" in again.output and "shift" in _cell(tmp_path, "head_k2_seed13")
    third = _eval(runner, tmp_path, "--regimes", "head", "--eval-tasks", "toy_shift")
    assert "1 found on disk" in third.output or "0 cells computed" in third.output


def test_deployed_ties_the_output_layer_to_the_trained_embeddings_and_restores_the_model(tokenizer):
    model = tiny_model(len(tokenizer))
    model.config.tie_word_embeddings = True
    model.tie_weights()
    model.lm_head.weight = model.model.embed_tokens.weight
    own_weight = model.lm_head.weight
    trained = copy.deepcopy(model.model)
    with torch.no_grad():
        trained.embed_tokens.weight.add_(1.0)
    with decoder_swapped(model, trained):
        assert model.model is trained and model.lm_head.weight is trained.embed_tokens.weight
    assert model.lm_head.weight is own_weight and model.model is not trained


def test_the_leaderboard_shows_the_shift_matrix_and_forgetting_against_gain(runner, tmp_path):
    _eval(runner, tmp_path / "runs", "--regimes", "zero-shot,head,full", "--seeds", "13,21", "--full-max-steps", "2",
          "--eval-tasks", "toy_shift", "--forgetting", "toy_shift", "--forgetting-text", "toy_news")
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0, built.output
    readme = (tmp_path / "lb" / "README.md").read_text()
    shift = readme.split("### Domain shift (k = 2)")[1].split("###")[0]
    cells = {json.loads(p.read_text())["cell"]["regime"]: json.loads(p.read_text())
             for p in (tmp_path / "runs").rglob("*_seed13.json")}
    head = cells["head"]
    row = next(line for line in shift.splitlines() if line.startswith("| toy → toy_shift | head |"))
    assert "(2)" in row and "2 left out: their label has no toy label" in shift
    forgetting = readme.split("### Forgetting vs gain (k = 2)")[1].split("###")[0]
    head_row = next(line for line in forgetting.splitlines() if line.startswith("| toy | head |"))
    assert "+0.0000" in head_row and "0/2" in head_row  # head changes nothing
    # the tiny random model answers the watched task at chance: it cannot show forgetting, and the table says so
    assert "**toy_shift (at chance: " in head_row
    assert head["forgetting"]["zero_shot"]["toy_shift"]["change"] == 0.0
    assert (tmp_path / "lb" / "plots" / "forgetting_vs_gain.png").is_file()


def test_the_mitigation_table_pairs_mitigated_and_plain_cells_by_seed(runner, tmp_path):
    for extra in ((), ("--mitigation", "ewc", "--mitigation-strengths", "1")):
        _eval(runner, tmp_path / "runs", "--regimes", "full", "--seeds", "13,21", "--full-max-steps", "2",
              "--forgetting", "toy_shift", "--forgetting-text", "toy_news", *extra)
    built = runner.invoke(cli, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--k", "2"])
    assert built.exit_code == 0, built.output
    section = (tmp_path / "lb" / "README.md").read_text().split("### Forgetting mitigation, paired (k = 2)")[1]
    row = next(line for line in section.splitlines() if line.startswith("| toy | full | ewc |"))
    assert row.split(" | ")[3] == "2"  # two seeds, each mitigated cell with its plain twin
    from harness.leaderboard.tables import without_mitigation

    assert without_mitigation("head (top2-l2sp)") == ("head (top2)", "l2sp")
    assert without_mitigation("lora (r16)") == ("lora (r16)", None)
