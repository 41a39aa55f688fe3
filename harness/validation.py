"""`harness validate`: every task file and template loads, and renders one example."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from harness.catalog import search_path
from harness.errors import HarnessError
from harness.prompts import answers, list_templates, load_template, render_input
from harness.tasks import has_offline_data, list_tasks, load_examples, load_task
from harness.types import Example, TaskSpec


def validate_all(data_dir: str | Path | None) -> Iterator[tuple[str, bool]]:
    """(message, ok) for every task and template; a failure does not stop the others."""
    names = list_tasks()
    if not names:
        raise HarnessError(f"no task files (*.yaml) in {', '.join(map(str, search_path('tasks')))}")
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
