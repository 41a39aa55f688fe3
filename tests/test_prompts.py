from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.prompts import answers, list_templates, load_template, render_demo, render_input, render_prefix, select_templates
from harness.catalog import SOURCE_ROOT as PROJECT_ROOT
from harness.tasks import load_examples, load_task, parse_task_file
from harness.types import Example

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
SHIPPED = [(t.stem, p.stem) for t in sorted((PROJECT_ROOT / "tasks").glob("*.yaml"))
           for p in sorted((PROJECT_ROOT / "prompts" / t.stem).glob("*.jinja"))]


def test_every_task_has_two_templates_and_its_defaults_exist():
    for path in sorted((PROJECT_ROOT / "tasks").glob("*.yaml")):
        task = parse_task_file(path)
        names = list_templates(task)
        assert len(names) >= 2, path
        assert set(task.templates) <= set(names), path


def _fixture_example(task_name: str) -> Example:
    task = parse_task_file(PROJECT_ROOT / "tasks" / f"{task_name}.yaml")
    if task_name == "bbc_news":  # package data: a fixed stand-in row keeps the golden file independent of it
        return Example("bbc", {"title": "Markets rally", "text": "Shares rose sharply on Monday. " * 12}, 0)
    return load_examples(task, "test", FIXTURES / "data")[0]


@pytest.mark.parametrize("task_name, template_name", SHIPPED)
def test_shipped_templates_render_their_golden_file(task_name, template_name):
    task = parse_task_file(PROJECT_ROOT / "tasks" / f"{task_name}.yaml")
    template = load_template(task, template_name)
    example = _fixture_example(task_name)
    text = render_input(template, example) + "|" + "|".join(answers(template))
    golden = GOLDEN / f"{task_name}__{template_name}.txt"
    assert golden.is_file(), f"no golden render {golden}"
    assert text == golden.read_text(encoding="utf-8")
    assert not text.startswith(("\n", " ")) and "{#" not in text


def test_render_ends_where_the_answer_begins(toy_env):
    task = load_task("toy")
    cloze = load_template(task, "cloze")
    ex = Example("x", {"text": "a good film"}, 1)
    assert render_input(cloze, ex) == "a good film it was"
    assert render_demo(cloze, ex) == "a good film it was great"
    assert answers(cloze) == [" terrible", " great"]
    plain = load_template(task, "plain")
    prefix = render_prefix(plain, [ex, Example("y", {"text": "bad"}, 0)])
    assert prefix == "review : a good film\nsentiment : very good !\n###\nreview : bad\nsentiment : not good !\n###\n"
    assert render_prefix(plain, []) == ""


def _write(tmp_path: Path, body: str) -> None:
    folder = tmp_path / "toy"
    folder.mkdir(exist_ok=True)
    (folder / "bad.jinja").write_text(body)


@pytest.mark.parametrize(
    "body, message",
    [
        ("{#\nverbalizers: {negative: a, positive: b}\n#}\n{{ text }} {{ rating }}\n", "uses field 'rating'"),
        ("{#\nverbalizers: {negative: a}\n#}\n{{ text }}\n", "'verbalizers' must map each label"),
        ("{#\ndescription: x\n#}\n{{ text }}\n", "lacks 'verbalizers'"),
        ("{{ text }}\n", "starts with a '{# ... #}' header"),
        ("{#\nverbalizers: {negative: a, positive: b}\ncolour: red\n#}\n{{ text }}\n", "unknown header key 'colour'"),
        ("{#\nverbalizers: {negative: a, positive: b}\n#}\n{{ text \n", "Jinja syntax error"),
        ("{#\nverbalizers: [a, b]\n#}\n{{ text }}\n", "header key 'verbalizers' must be a dict"),
    ],
)
def test_bad_templates_fail_at_load_time_naming_the_file(toy_env, tmp_path, monkeypatch, body, message):
    monkeypatch.setenv("HARNESS_PROMPTS_DIR", str(tmp_path))
    _write(tmp_path, body)
    with pytest.raises(HarnessError) as info:
        load_template(load_task("toy"), "bad")
    assert message in str(info.value) and "bad.jinja" in str(info.value)


def test_sandbox_blocks_attribute_escapes(toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_PROMPTS_DIR", str(tmp_path))
    _write(tmp_path, "{#\nverbalizers: {negative: a, positive: b}\n#}\n{{ text.__class__.__mro__ }}\n")
    template = load_template(load_task("toy"), "bad")
    with pytest.raises(Exception, match="unsafe|access"):
        render_input(template, Example("x", {"text": "t"}, 0))


def test_select_templates(toy_env):
    task = load_task("toy")
    assert [t.name for t in select_templates(task, None)] == ["cloze", "plain"]
    assert [t.name for t in select_templates(task, "all")] == ["cloze", "plain"]
    assert [t.name for t in select_templates(task, "plain")] == ["plain"]
    with pytest.raises(HarnessError, match="unknown template 'nope' for task 'toy'"):
        select_templates(task, "nope")
