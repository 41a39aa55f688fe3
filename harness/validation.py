"""What `harness validate`, `harness tasks` and `harness prompts render` show: every task file and template loads
and renders one example; each task's splits, labels and templates; exactly the text one example is scored on."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from harness.catalog import search_path
from harness.errors import HarnessError
from harness.prompts import answers, list_templates, load_template, render_input, render_prefix, select_templates
from harness.sampling import draw_kshot, exclude_self
from harness.tasks import describe_splits, has_offline_data, list_tasks, load_examples, load_task
from harness.types import Example, TaskSpec


def validate_all(data_dir: str | Path | None) -> Iterator[tuple[str, bool]]:
    """(message, ok) for every task and template; a failure does not stop the others."""
    names = _task_names()
    for name in names:
        try:
            task = load_task(name)
            example, source = _one_example(task, data_dir)
            templates = list_templates(task)
        except HarnessError as exc:
            yield str(exc), False
            continue
        yield f"task {name}: {len(task.label_names)} labels, example from {source}", True
        for template_name in templates:
            try:
                template = load_template(task, template_name)
                text = render_input(template, example)
                if not text.strip():
                    raise HarnessError(f"{template.path}: renders to empty text")
                yield f"  {name}/{template_name}: {len(text)} chars, answers {answers(template)}", True
            except HarnessError as exc:
                yield f"  {name}/{template_name}: {exc}", False
        for default in task.templates:
            if default not in templates:
                yield f"  {task.path}: default template '{default}' has no file", False


def _one_example(task: TaskSpec, data_dir: str | Path | None) -> tuple[Example, str]:
    """The first test row when the data is on disk (never the hub), else a placeholder naming each field."""
    if has_offline_data(task, "test", data_dir):
        return load_examples(task, "test", data_dir)[0], "data"
    return Example(id="placeholder", fields={f: f"<{f}>" for f in task.input_fields}, label=0), "placeholder"


def describe_tasks(data_dir: str | Path | None) -> Iterator[tuple[list[str], bool]]:
    """(lines, ok) per task: its split sizes (files on disk; hub splits are not downloaded), labels, templates."""
    names = _task_names()
    for name in names:
        try:
            task = load_task(name)
            sizes = ", ".join(f"{k} {v}" for k, v in describe_splits(task, data_dir).items())
            templates = ", ".join(list_templates(task))
        except HarnessError as exc:
            yield [f"FAILED {name}: {exc}"], False
            continue
        yield [f"{name} (v{task.version}): {sizes}", f"  labels: {', '.join(task.label_names)}",
               f"  templates: {templates} (default: {', '.join(task.templates)})"], True


def render_example(task_name: str, template: str | None, k: int, seed: int, index: int,
                   data_dir: str | Path | None) -> list[str]:
    """Exactly the text one test example is scored on, demos included, then its answers."""
    task = load_task(task_name)
    chosen = select_templates(task, template)[0] if template else select_templates(task, None)[0]
    test = load_examples(task, "test", data_dir)
    if index >= len(test):
        raise HarnessError(f"--index {index} is past the {len(test)} test examples of '{task.name}'")
    example = test[index]
    demos = draw_kshot(load_examples(task, "train", data_dir), k, seed, task.label_names).train if k else ()
    return [render_prefix(chosen, exclude_self(demos, example)) + render_input(chosen, example),
            "--- the text above is scored as written (no final newline), followed by one answer per class",
            f"# template {chosen.name} ({chosen.path}); example {example.id}, gold '{task.label_names[example.label]}'",
            *(f"# {label}: {answer!r}" for label, answer in zip(task.label_names, answers(chosen)))]


def _task_names() -> list[str]:
    """Every task file's name; none at all is one line naming the folders searched."""
    names = list_tasks()
    if not names:
        raise HarnessError(f"no task files (*.yaml) in {', '.join(map(str, search_path('tasks')))}")
    return names
