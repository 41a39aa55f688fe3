"""The one slow test: the embedded model on the embedded task, through the CLI."""

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError
from harness.models import locate_embedded_gguf
from harness.session import majority_accuracy
from harness.sampling import select_test_subset
from harness.tasks import load_examples, load_task


@pytest.mark.slow
def test_embedded_model_beats_the_majority_baseline_on_bbc_news(tmp_path):
    try:
        locate_embedded_gguf()
        test = select_test_subset(load_examples(load_task("bbc_news"), "test"), 40)
    except HarnessError as exc:
        pytest.skip(str(exc))
    result = CliRunner().invoke(cli, ["eval", "--limit", "40", "--k", "1", "--seeds", "13", "--full-max-steps", "2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    zero = json.loads(next(tmp_path.rglob("zero-shot_k0.json")).read_text())
    few = json.loads(next(tmp_path.rglob("few-shot_k1_seed13.json")).read_text())
    assert zero["model"]["source"] == "embedded" and len(zero["model"]["sha256"]) == 64
    assert zero["n"] == few["n"] == 40
    assert zero["metrics"]["accuracy"] > majority_accuracy(test) + 0.1
    assert few["effective_k"]["min"] == 1
    head = json.loads(next(tmp_path.rglob("head_k1_seed13.json")).read_text())
    full = json.loads(next(tmp_path.rglob("full_k1_seed13.json")).read_text())
    assert head["n"] == full["n"] == 40 and full["cost"]["train_steps"] == 2
    assert head["cost"]["stored_bytes_per_task"] < 100_000 < full["cost"]["stored_bytes_per_task"]
