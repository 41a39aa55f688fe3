from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.catalog import SOURCE_ROOT as PROJECT_ROOT
from harness.tasks import (has_offline_data, list_tasks, load_examples, load_task, parse_task_file,
                           read_labelled_text_folders)

SHIPPED = sorted(p.stem for p in (PROJECT_ROOT / "tasks").glob("*.yaml"))
GOOD = """name: {name}
version: 1
dataset: {{hub: some/dataset}}
splits: {{train: train, test: test}}
input_fields: [text]
label_field: label
label_names: [a, b]
metrics: [accuracy]
templates: [t]
"""


def write_task(tmp_path: Path, text: str, name: str = "t1") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_ships_the_nine_tasks():
    assert set(SHIPPED) >= {"sst2", "sst5", "mr", "subj", "trec", "agnews", "rte", "boolq", "bbc_news"}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_task_file_parses(name):
    task = parse_task_file(PROJECT_ROOT / "tasks" / f"{name}.yaml")
    assert task.name == name and task.version >= 1 and len(task.label_names) >= 2 and len(task.templates) >= 1


def test_good_file_parses(tmp_path):
    task = parse_task_file(write_task(tmp_path, GOOD.format(name="t1")))
    assert task.dataset.hub == "some/dataset" and task.label_names == ("a", "b")


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD.format(name="t1") + "colour: red\n", "unknown key 'colour'"),
        (GOOD.format(name="t1").replace("{hub: some/dataset}", "{hub: x, url: y}"), "unknown key 'dataset.url'"),
        (GOOD.format(name="t1").replace("version: 1", "version: '1'"), "key 'version' must be a int"),
        (GOOD.format(name="t1").replace("version: 1", "version: true"), "key 'version' must be a int"),
        (GOOD.format(name="t1").replace("label_field: label\n", ""), "missing key 'label_field'"),
        (GOOD.format(name="other"), "name 'other' must equal the file name 't1'"),
        (GOOD.format(name="t1").replace("[accuracy]", "[bleu]"), "unknown metric 'bleu'"),
        (GOOD.format(name="t1").replace("[a, b]", "[a]"), "at least two labels"),
        (GOOD.format(name="t1").replace("train: train,", "dev: train,"), "unknown split 'splits.dev'"),
        ("name: t1\nversion: [1\n", "malformed YAML"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_bad_task_files_name_the_file_and_key(tmp_path, text, message):
    path = write_task(tmp_path, text)
    with pytest.raises(HarnessError) as info:
        parse_task_file(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unknown_task_lists_known_ones(toy_env):
    with pytest.raises(HarnessError, match="unknown task 'nope'.*known: .*toy"):
        load_task("nope")


def test_local_data_files_load(toy_env):
    task = load_task("toy")
    train = load_examples(task, "train")
    assert len(train) == 20 and train[0].id == "train-0" and set(train[0].fields) == {"text"}
    assert "toy" in list_tasks() and "sst2" in list_tasks()  # user folders add to the shipped ones


def test_mirror_wins_over_the_dataset_spec(toy_env, tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "test.jsonl").write_text('{"text": "mirrored", "label": 1}\n')
    rows = load_examples(load_task("toy"), "test", tmp_path)
    assert [(r.fields["text"], r.label) for r in rows] == [("mirrored", 1)]
    assert has_offline_data(load_task("toy"), "test", tmp_path)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "x", "label": 2}', "label 2 is outside label_names 0..1"),
        ('{"text": "x", "label": "positive"}', "label 'positive' is outside"),
        ('{"body": "x", "label": 1}', "missing input field 'text'"),
        ('{"text": "x", "label": 1', "line 1 is not valid JSON"),
    ],
)
def test_bad_rows_name_file_and_value(toy_env, tmp_path, line, message):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "test.jsonl").write_text(line + "\n")
    with pytest.raises(HarnessError) as info:
        load_examples(load_task("toy"), "test", tmp_path)
    assert message in str(info.value) and "test.jsonl" in str(info.value)


def test_empty_split_is_an_error(toy_env, tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "test.jsonl").write_text("\n")
    with pytest.raises(HarnessError, match="split 'test' is empty"):
        load_examples(load_task("toy"), "test", tmp_path)


def test_labelled_text_folders_split_is_deterministic_and_disjoint(tmp_path):
    task = parse_task_file(write_task(tmp_path, GOOD.format(name="t1")))
    for label in ("alpha", "beta"):
        (tmp_path / "corpus" / label).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "corpus" / label / f"{i:03d}.txt").write_text(f"Title {label} {i}\n\nBody  of\n{label} {i}.\n")
    parts = {s: read_labelled_text_folders(tmp_path / "corpus", task, s) for s in ("train", "validation", "test")}
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [28, 4, 8]
    ids = [r["id"] for rows in parts.values() for r in rows]
    assert len(ids) == len(set(ids)) == 40
    assert parts["test"] == read_labelled_text_folders(tmp_path / "corpus", task, "test")
    row = parts["train"][0]
    assert row["title"].startswith("Title") and row["text"].startswith("Body of")
    assert {r["label"] for r in parts["test"]} == {0, 1}


def test_labelled_text_folders_drop_repeated_bodies_before_splitting(tmp_path):
    task = parse_task_file(write_task(tmp_path, GOOD.format(name="t1")))
    for label in ("alpha", "beta"):
        (tmp_path / "corpus" / label).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "corpus" / label / f"{i:03d}.txt").write_text(f"Title {i}\n\nBody {label} {i}.\n")
    for i in range(5):  # five repeats of an alpha body: under another title, and in the other topic
        (tmp_path / "corpus" / "alpha" / f"x{i}.txt").write_text(f"Another title\n\nBody  alpha\n{i}.\n")
        (tmp_path / "corpus" / "beta" / f"y{i}.txt").write_text(f"Title {i}\n\nBody alpha {i}.\n")
    parts = {s: read_labelled_text_folders(tmp_path / "corpus", task, s) for s in ("train", "validation", "test")}
    bodies = [r["text"] for rows in parts.values() for r in rows]
    assert len(bodies) == len(set(bodies)) == 40  # each article once, in one split
    assert all(r["id"].split("/")[1][0].isdigit() for rows in parts.values() for r in rows)  # the first kept


def test_bbc_news_loads_from_the_installed_package():
    task = load_task("bbc_news")
    try:
        test = load_examples(task, "test")
    except HarnessError as exc:
        pytest.skip(str(exc))
    train = load_examples(task, "train")
    assert len(test) == 418 and {e.label for e in test} == set(range(5)) and len(train) == 1462
    bodies = {e.fields["text"] for e in train} | {e.fields["text"] for e in load_examples(task, "validation")}
    assert not any(e.fields["text"] in bodies for e in test)  # deduplicated before splitting
