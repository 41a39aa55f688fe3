import json

import pytest

from harness.errors import HarnessError
from harness.results import prediction_row, read_result, summary_table, write_cell
from harness.types import ALL_K, Cell, CellResult, Cost, Prediction


def test_cell_paths():
    cell = Cell("sst2", "lmbff", "few-shot", 16, 13)
    json_path, jsonl_path = cell.paths(__import__("pathlib").Path("runs"), "smollm2-135m")
    assert str(json_path) == "runs/smollm2-135m/sst2/lmbff/few-shot_k16_seed13.json"
    assert jsonl_path.suffix == ".jsonl"
    assert Cell("sst2", "lmbff", "zero-shot", 0, None).stem == "zero-shot_k0"
    assert Cell("sst2", "lmbff", "head", ALL_K, 13, "top2").stem == "head-top2_kall_seed13"


def test_write_and_read_round_trip(tmp_path):
    preds = [Prediction("a", 1, (0.2, 0.8), (-2.0, -1.0), (-0.5, -0.25), n_demos=4),
             Prediction("b", 0, (0.6, 0.4), (-1.0, -1.4), (-0.2, -0.3))]
    result = CellResult(Cell("t", "a", "few-shot", 2, 13), metrics={"accuracy": 1.0}, n=2, cost=Cost(train_steps=3),
                        details={"demo_ids": ["x"]}, provenance={"config_hash": "abc"})
    write_cell(tmp_path / "c.json", tmp_path / "c.jsonl", result, preds)
    assert read_result(tmp_path / "c.json") == result
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert rows == [prediction_row(p) for p in preds]
    assert rows[0]["pred"] == 1 and rows[0]["loglik"] == [-2.0, -1.0] and rows[0]["n_demos"] == 4
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_permissions_of_open_under_the_umask(tmp_path, umask):
    import os

    from harness.results import write_atomic

    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "c.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "c.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_corrupt_result_is_a_one_line_error(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(HarnessError, match="c.json: unreadable result file"):
        read_result(tmp_path / "c.json")


def test_old_result_files_read_demo_ids_as_train_ids_and_ignore_unknown_cost_keys():
    raw = {"cell": {"task": "t", "template": "a", "regime": "head", "k": 4, "seed": 13, "variant": ""},
           "status": "ok", "metrics": {"accuracy": 0.5}, "n": 2, "config_hash": "h", "demo_ids": ["a", "b"],
           "hyperparameters": {"l2": 0.0}, "cost": {"train_steps": 5, "retired_key": 1}}
    result = CellResult.from_json(raw)
    assert result.train_ids == ["a", "b"] and result.cost.train_steps == 5 and result.config_hash == "h"
    assert result.details["hyperparameters"] == {"l2": 0.0}


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "not a harness result file"),
    ({"cell": {"task": "t"}, "status": "failed"}, "malformed cell"),
    ({"cell": {"task": "t", "template": "a", "regime": "head", "k": 4, "seed": 1}, "metrics": {}}, "partial result"),
])
def test_malformed_result_files_are_value_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        CellResult.from_json(raw)


def test_summary_table_mean_and_sample_std():
    def result(regime, seed, acc):
        return CellResult(Cell("t", "a", regime, 4, seed), metrics={"accuracy": acc}, n=10)

    table = summary_table([result("few-shot", 1, 0.5), result("few-shot", 2, 0.7), result("zero-shot", None, 0.4)],
                          metrics=("accuracy",))
    lines = table.splitlines()
    assert lines[2] == "| t | zero-shot | 4 | 0.400 ± 0.000 | 1 | 10 |"
    assert lines[3] == "| t | few-shot | 4 | 0.600 ± 0.141 | 2 | 10 |"
