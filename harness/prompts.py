"""Prompt templates: prompts/<task>/<name>.jinja with a YAML header; one sandboxed Jinja environment."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from harness import catalog
from harness.errors import HarnessError
from harness.tasks import read_text, read_yaml
from harness.types import Example, TaskSpec, Template, TestInput

_HEADER_KEYS: dict[str, type] = {"description": str, "verbalizers": dict, "delimiter": str, "separator": str}
DEFAULT_DELIMITER = " "
DEFAULT_SEPARATOR = "\n\n"

# a rendered prompt may be at most this many characters per token of the model's context (a token is rarely more
# than ten characters): past it, the template (or a field) has blown up, and scoring it would take hours
CHARACTERS_PER_TOKEN = 64
# filters and globals whose output changes from one run to the next under one config hash: refused
NONDETERMINISTIC = ("random", "shuffle", "lipsum")


class _Undefined(jinja2.StrictUndefined):
    """A field or attribute that is not there is an error wherever it is used, even printed inside a list."""

    __repr__ = jinja2.StrictUndefined._fail_with_undefined_error


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, where an attribute it blocks is an error at once (never an undefined value rendered as
    '[Undefined]' or skipped by `default`)."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute '{attribute}' of '{type(obj).__name__}' object is unsafe")


def _text_only(value: Any) -> Any:
    """What `{{ ... }}` may print: text and numbers, not a function (its repr holds a memory address)."""
    if callable(value):
        raise jinja2.TemplateRuntimeError(f"prints a function ({getattr(value, '__name__', value)}), not text")
    return value


_ENV = _Sandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True, finalize=_text_only)
for _name in NONDETERMINISTIC:
    _ENV.filters.pop(_name, None)
    _ENV.globals.pop(_name, None)


def list_templates(task: TaskSpec) -> list[str]:
    """Names of every template file of a task, in the user's prompt folders and the shipped one."""
    return catalog.names("prompts", f"{task.name}/*.jinja")


def select_templates(task: TaskSpec, choice: str | None) -> list[Template]:
    """'all', a comma-separated list of names, or None for the task's default templates."""
    available = list_templates(task)
    if choice is None:
        names = list(task.templates)
    elif choice == "all":
        names = available
    else:
        names = [catalog.check_name("template", n.strip()) for n in choice.split(",") if n.strip()]
        if not names:
            raise HarnessError(f"--templates names no template (task '{task.name}' has: {', '.join(available)})")
    for name in names:
        if name not in available:
            folders = ", ".join(str(f / task.name) for f in catalog.search_path("prompts"))
            raise HarnessError(
                f"unknown template '{name}' for task '{task.name}' (in {folders}: {', '.join(available) or 'none'})"
            )
    if len(set(names)) < len(names):
        raise HarnessError(f"--templates names a template twice: {', '.join(names)}")
    return [load_template(task, n) for n in names]


def load_template(task: TaskSpec, name: str) -> Template:
    """Read, parse and check one template against the task's fields and labels."""
    path = catalog.find_one("prompts", f"{task.name}/{name}.jinja")
    if path is None:
        raise HarnessError(f"unknown template '{name}' for task '{task.name}' (known: {', '.join(list_templates(task))})")
    text = read_text(path)
    header, body = _split_header(path, text)
    try:
        parsed = _ENV.parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{path}: line {exc.lineno}: Jinja syntax error: {exc.message}") from exc
    used = {n.name for n in parsed.find_all((nodes.Filter, nodes.Name, nodes.Test))}
    refused = sorted(used & set(NONDETERMINISTIC))
    if refused:
        raise HarnessError(f"{path}: uses '{refused[0]}', whose output changes from run to run: a prompt must render "
                           "the same for the same example")
    try:
        _compile(body)
    except jinja2.TemplateError as exc:  # an unknown filter or test
        raise HarnessError(f"{path}: {getattr(exc, 'message', None) or exc}") from exc
    for field in sorted(jinja2.meta.find_undeclared_variables(parsed)):
        if field not in task.input_fields:
            raise HarnessError(
                f"{path}: uses field '{field}', which task '{task.name}' lacks "
                f"(input_fields: {', '.join(task.input_fields)})"
            )
    verbalizers = header.get("verbalizers")
    if verbalizers is None:
        raise HarnessError(f"{path}: header lacks 'verbalizers' (label name -> label word)")
    if set(verbalizers) != set(task.label_names) or not all(isinstance(v, str) and v for v in verbalizers.values()):
        raise HarnessError(
            f"{path}: 'verbalizers' must map each label of task '{task.name}' "
            f"({', '.join(task.label_names)}) to a non-empty word, got {verbalizers!r}"
        )
    words = [verbalizers[label] for label in task.label_names]
    for i, word in enumerate(words):
        if word in words[:i]:
            twins = [label for label in task.label_names if verbalizers[label] == word]
            raise HarnessError(f"{path}: labels {' and '.join(twins)} share the verbalizer '{word}': the classes "
                               "could not be told apart")
    return Template(
        name=path.stem,
        task=task.name,
        path=path,
        source=body,
        text=text,
        description=header.get("description", ""),
        verbalizers=tuple(verbalizers[label] for label in task.label_names),
        delimiter=header.get("delimiter", DEFAULT_DELIMITER),
        separator=header.get("separator", DEFAULT_SEPARATOR),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _split_header(path: Path, text: str) -> tuple[dict, str]:
    """'{# yaml #}' then the body; one newline after the header and one at the end of the file are dropped."""
    if not text.startswith("{#") or "#}" not in text:
        raise HarnessError(f"{path}: a template starts with a '{{# ... #}}' header holding its verbalizers")
    raw_header, _, body = text[2:].partition("#}")
    header = read_yaml(path, raw_header) or {}
    if not isinstance(header, dict):
        raise HarnessError(f"{path}: the header must be a YAML mapping")
    for key, value in header.items():
        if key not in _HEADER_KEYS:
            raise HarnessError(f"{path}: unknown header key '{key}' (allowed: {', '.join(_HEADER_KEYS)})")
        if not isinstance(value, _HEADER_KEYS[key]):
            raise HarnessError(f"{path}: header key '{key}' must be a {_HEADER_KEYS[key].__name__}, got {value!r}")
    body = body.removeprefix("\n").removesuffix("\n")
    return header, body


def check_length(template: Template, example_id: str, text: str, context_tokens: int) -> str:
    """A rendered prompt of at most CHARACTERS_PER_TOKEN characters per token of the model's context; a longer one
    is one line (it would be cut anyway, after hours of tokenizing and scoring)."""
    if len(text) > CHARACTERS_PER_TOKEN * context_tokens:
        raise HarnessError(f"{template.path}: example {example_id} renders {len(text):,} characters, more than "
                           f"{CHARACTERS_PER_TOKEN} per token of the model's {context_tokens}-token context: refused")
    return text


def render_input(template: Template, example: Example | TestInput) -> str:
    """The example rendered up to where the answer begins."""
    try:
        return _compile(template.source).render(**example.fields)
    except jinja2.UndefinedError as exc:
        raise HarnessError(f"{template.path}: {exc.message} in example {example.id}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise HarnessError(f"{template.path}: blocked by the sandbox ({exc}) in example {example.id}") from exc
    except Exception as exc:  # a template is user code: any error while rendering is the template's
        message = getattr(exc, "message", None) or str(exc)
        raise HarnessError(f"{template.path}: fails while rendering example {example.id}: "
                           f"{type(exc).__name__}: {message}") from exc


def render_fields(expressions: Mapping[str, str], example: Example, where: Path) -> dict[str, str]:
    """New input fields from Jinja expressions over an example's fields (a task file's domain_shift.field_map)."""
    try:
        return {name: _compile(source).render(**example.fields) for name, source in expressions.items()}
    except jinja2.TemplateError as exc:
        raise HarnessError(f"{where}: field_map fails on example {example.id}: {exc.message}") from exc


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def answers(template: Template) -> list[str]:
    """The continuation scored for each class: delimiter + label word."""
    return [template.delimiter + word for word in template.verbalizers]


def first_answer_tokens(tokenizer: Any, template: Template) -> list[int]:
    """Each class's first answer token (a classifier head can start from the LM head's rows of them)."""
    return [tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in answers(template)]


def render_demo(template: Template, example: Example) -> str:
    """A solved example: rendered input, delimiter, its label word."""
    return render_input(template, example) + template.delimiter + template.verbalizers[example.label]


def render_prefix(template: Template, demos: Sequence[Example]) -> str:
    """The demos joined by the separator, ending with one separator before the test input (or '')."""
    if not demos:
        return ""
    return template.separator.join(render_demo(template, d) for d in demos) + template.separator
