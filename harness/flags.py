"""The options of `harness eval`, made from what declares them: the run's own options from `EvalConfig`'s defaults,
each regime's from its settings dataclass (regimes/options.py: name, type, range, help, default per device kind),
and the run file (`--config run.yaml`) from the same options. A new regime adds no line here."""

from __future__ import annotations

import os
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from harness.errors import HarnessError
from harness.types import ALL_K


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def unique(flag: str, values: list[Any], raw: str) -> list[Any]:
    """A list flag names something, and nothing twice (a seed given twice would be counted twice)."""
    if not values:
        raise click.BadParameter(f"{flag} names nothing, got '{raw}'")
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise click.BadParameter(f"{flag} names {', '.join(twice)} more than once, got '{raw}'")
    return values


def names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else unique(f"--{param.name.replace('_', '-')}", split_list(str(value)), str(value))


def _numbers(kind: type) -> Callable[[click.Context, click.Parameter, Any], list | None]:
    def parse(ctx: click.Context, param: click.Parameter, value: Any) -> list | None:
        if value is None:
            return None
        flag = f"--{param.name.replace('_', '-')}"
        try:
            values = [kind(v) for v in split_list(str(value))]
        except ValueError:
            raise click.BadParameter(f"{flag} must be comma-separated {kind.__name__}s, got '{value}'") from None
        return unique(flag, values, str(value))

    return parse


int_list, float_list = _numbers(int), _numbers(float)


def k_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        given = [None if v == "all" else int(v) for v in split_list(str(value))]
    except ValueError:
        given = []
    ks = [ALL_K if k is None else k for k in given]
    if not ks or any(k is not None and k < 1 for k in given):
        raise click.BadParameter(f"--k must be comma-separated positive integers or 'all', got '{value}'")
    return unique("--k", ks, str(value))


def limit(ctx: click.Context, param: click.Parameter, value: Any) -> int | None:
    if value is None or value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"must be a number of examples or 'all', got '{value}'") from None
    if count < 1:
        raise click.BadParameter(f"must be a positive number of examples or 'all', got '{value}'")
    return count


def _int_or_word(ctx: click.Context, param: click.Parameter, value: Any) -> int | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return str(value)  # a word: checked against the field's choices when the settings resolve


def folders(env: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], None]:
    """--tasks-dir / --prompts-dir: put the folders in front of the search path that the library reads."""

    def add(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            os.environ[env] = os.pathsep.join([*value, *filter(None, os.environ.get(env, "").split(os.pathsep))])

    return add


def folder_options(command: Callable) -> Callable:
    """The task and template search path, for every command that reads tasks."""
    from harness.catalog import PROMPTS_DIR_ENV, TASKS_DIR_ENV

    command = click.option("--prompts-dir", multiple=True, expose_value=False, callback=folders(PROMPTS_DIR_ENV),
                           help=f"A folder of <task>/<name>.jinja templates, searched before the shipped ones "
                                f"(repeatable; also ${PROMPTS_DIR_ENV}).")(command)
    return click.option("--tasks-dir", multiple=True, expose_value=False, callback=folders(TASKS_DIR_ENV),
                        help=f"A folder of task YAML files, searched before the shipped ones (repeatable; also "
                             f"${TASKS_DIR_ENV}).")(command)


DATA_DIR_HELP = "Offline mirror: DIR/<task>/<split>.jsonl is read instead of the hub dataset."


def eval_options(command: Callable) -> Callable:
    """`harness eval`'s options: the run's, with EvalConfig's defaults, then every regime's, from its settings."""
    from harness.regimes import REGISTRY
    from harness.session import EvalConfig

    d = EvalConfig()
    for decorator in reversed([
        click.option("--config", is_eager=True, expose_value=False, callback=load_run_file,
                     help="A run file: every option below as a YAML key (lists as lists); flags override it."),
        click.option("--tasks", default=",".join(d.tasks), show_default=True, callback=names,
                     help="Comma-separated task names."),
        click.option("--model", default=d.model, show_default=True, help="Alias, hub id or local folder of a causal LM."),
        click.option("--regimes", default=",".join(d.regimes), show_default=True, callback=names,
                     help=f"Comma-separated regimes (known: {', '.join(REGISTRY)})."),
        click.option("--k", "k", default=",".join(map(str, d.k)), show_default=True, callback=k_list,
                     help="Examples per class, comma-separated; 'all' = the whole train split (validation as dev)."),
        click.option("--seeds", default=",".join(map(str, d.seeds)), show_default=True, callback=int_list,
                     help="Sampling seeds."),
        click.option("--templates", default=None, help="'all', or comma-separated names [default: each task's]."),
        click.option("--limit", default=str(d.limit), show_default=True, callback=limit,
                     help="Test examples per task, or 'all'."),
        click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=DATA_DIR_HELP),
        click.option("--out", default=str(d.out), show_default=True, type=click.Path(path_type=Path), help="Run folder."),
        click.option("--overwrite", is_flag=True, help="Recompute cells already on disk."),
        click.option("--dry-run", is_flag=True, help="List the cells this run would compute, and those on disk; "
                                                     "compute nothing."),
        click.option("--trust-remote-code", is_flag=True, help="Allow a hub model's own Python code to run."),
        click.option("--eval-tasks", default=None, callback=names,
                     help="Domain shift: every cell also predicts these tasks' test splits (labels mapped in their "
                          "task files)."),
        click.option("--forgetting", default=None, callback=names,
                     help="Forgetting: after a regime adapts the backbone, its zero-shot accuracy on these tasks and "
                          "held-out NLL, against the untouched model."),
        click.option("--forgetting-text", default=d.forgetting_text, show_default=True,
                     help="--forgetting: the task whose test-split texts are the held-out text."),
        click.option("--sequence", default=None, callback=names,
                     help="Continual learning: train one model on these tasks one after another (instead of "
                          "--tasks) and report the accuracy matrix with ACC, BWT and FWT."),
        click.option("--threads", default=None, type=click.IntRange(min=1),
                     help="torch's CPU threads [default: the cores free to this process: its affinity, cgroup quota "
                          "and $OMP_NUM_THREADS, less the processes already running]."),
        click.option("--executor", default=d.executor, show_default=True, type=click.Choice(["local", "ray"]),
                     help="Where cells run: one after another here, or as tasks on a Ray cluster (pip install -e "
                          "'.[ray]')."),
        click.option("--address", default=None, help="--executor ray: an existing cluster [default: a local one]."),
        click.option("--cpus-per-cell", default=d.cpus_per_cell, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="--executor ray: CPUs each worker asks for (its torch threads)."),
        click.option("--gpus-per-cell", default=None, type=click.FloatRange(min=0),
                     help="--executor ray: GPU share per worker, e.g. 0.2 packs five on one GPU [default: 1 with "
                          "CUDA, else 0]."),
        folder_options,
    ]):
        command = decorator(command)
    return add_options(regime_options(REGISTRY))(command)


# ---- regime options, from the settings dataclasses

def regime_options(registry: dict[str, Any]) -> list[click.Option]:
    """One click option per settings field name (shared: `--x`) or per regime and field (`--<regime>-x`), its help
    the field's, with the regimes that read it and their defaults (per device kind where they differ)."""
    from harness.regimes.options import field_types, option_name

    declared: dict[str, list[tuple[str, Any, Any, Any]]] = {}  # option -> (regime, field, type, cuda default)
    for regime_name, regime in registry.items():
        types = field_types(regime.settings)
        cuda = getattr(regime, "cuda", {}) or {}
        for f in fields(regime.settings):
            declared.setdefault(option_name(f, regime_name), []).append(
                (regime_name, f, types[f.name], cuda.get(f.name, MISSING)))
    return [_option(name, entries) for name, entries in declared.items()]


def _option(name: str, entries: list[tuple[str, Any, Any, Any]]) -> click.Option:
    from harness.regimes.options import meta

    _, first, kind, _ = entries[0]
    flag = "--" + name.replace("_", "-")
    helps: dict[str, list[str]] = {}
    for regime, f, _, _ in entries:
        helps.setdefault(meta(f, "help") or f.name.replace("_", " "), []).append(regime)
    text = "; ".join(f"{', '.join(regimes)}: {h}" for h, regimes in helps.items())
    defaults: dict[str, list[str]] = {}
    for regime, f, _, cuda in entries:
        shown = _show(f.default) + ("" if cuda is MISSING or cuda == f.default else f" (cuda: {_show(cuda)})")
        defaults.setdefault(shown, []).append(regime)
    default_text = "; ".join(f"{', '.join(r)} {d}" if len(defaults) > 1 else d for d, r in defaults.items())
    help_text = f"{text} [default: {default_text}]"
    if kind is bool:
        return click.Option([flag], is_flag=True, default=None, help=help_text)
    args = typing.get_args(kind)
    if meta(first, "axis"):
        callback = int_list if kind is int else names
    elif args and args[-1] is Ellipsis:
        callback = float_list if args[0] is float else names
    elif kind is int or kind is float:
        return click.Option([flag], type=kind, default=None, help=help_text)
    elif int in args and str in args:
        callback = _int_or_word
    else:
        return click.Option([flag], type=str, default=None, help=help_text)
    return click.Option([flag], default=None, callback=callback, help=help_text)


def _show(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 6:
        return f"{len(value)} values {_show(value[0])} .. {_show(value[-1])}"
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_options(options: Iterable[click.Option]) -> Callable[[Callable], Callable]:
    """Put `options` after the ones a function's click decorators declared (click lists those in reverse)."""
    def decorate(function: Callable) -> Callable:
        function.__click_params__ = [*reversed(list(options)), *getattr(function, "__click_params__", [])]
        return function

    return decorate


# ---- the run file

def load_run_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--config run.yaml: every option of the command as a key (flag name without '--'), lists as YAML lists;
    the command line overrides it. Unknown keys and values of the wrong type are one line naming the file."""
    if value is None:
        return None
    from harness.tasks import read_text, read_yaml

    path = Path(value)
    if not path.is_file():
        raise HarnessError(f"--config {value}: no such file")
    raw = read_yaml(path, read_text(path))
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a run file is a mapping of option names to values, got {type(raw).__name__}")
    params = {p.name: p for p in ctx.command.params if p.name and p.name != param.name}
    known = sorted(p.opts[0].lstrip("-") for p in params.values())
    defaults = {}
    for key, given in raw.items():
        option = params.get(str(key).replace("-", "_"))
        if option is None:
            raise HarnessError(f"{path}: unknown key '{key}' (known: {', '.join(known)})")
        text = _as_option_value(path, key, given, option)
        try:
            converted = option.type_cast_value(ctx, text)
            if option.callback is not None and option.expose_value:
                option.callback(ctx, option, converted)
        except click.BadParameter as exc:
            raise HarnessError(f"{path}: key '{key}': {exc.message}") from None
        defaults[option.name] = text
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _as_option_value(path: Path, key: Any, given: Any, option: click.Parameter) -> Any:
    """A YAML value as the option's command-line text: a list joined by commas (several values for a repeatable
    option), a scalar as it is; anything else is a wrong type."""
    if isinstance(given, dict) or given is None:
        raise HarnessError(f"{path}: key '{key}' takes {'a list or ' if option.multiple else ''}a value, "
                           f"got {'nothing' if given is None else 'a mapping'}")
    if isinstance(given, list):
        if any(isinstance(v, (list, dict)) or v is None for v in given):
            raise HarnessError(f"{path}: key '{key}' takes a flat list, got {given!r}")
        return [str(v) for v in given] if option.multiple else ",".join(str(v) for v in given)
    if getattr(option, "is_flag", False) and not isinstance(given, bool):
        raise HarnessError(f"{path}: key '{key}' takes true or false, got {given!r}")
    return [str(given)] if option.multiple else given


RUN_OPTIONS = ("tasks", "model", "regimes", "k", "seeds", "templates", "limit", "data_dir", "out", "overwrite",
               "trust_remote_code", "eval_tasks", "forgetting", "forgetting_text", "sequence", "threads", "executor",
               "address", "cpus_per_cell", "gpus_per_cell")  # the run's own options; the rest are the regimes'


def eval_config(params: dict[str, Any], command: str) -> Any:
    """`harness eval`'s parsed options as the run's configuration (regime options: those given, by name)."""
    from harness.session import EvalConfig

    run = {name: params[name] for name in RUN_OPTIONS}
    lists = {name: run.pop(name) or [] for name in ("eval_tasks", "forgetting", "sequence")}
    return EvalConfig(**{name: value for name, value in run.items() if name != "address"}, **lists,
                      ray_address=run["address"], command=command,
                      options={name: value for name, value in params.items()
                               if name not in RUN_OPTIONS and name != "config" and value is not None})


def run_file_values(params: dict[str, Any]) -> dict[str, Any]:
    """A command's resolved parameters as a run file (`harness eval --config` reads it back): options left to
    their defaults (None) are left out, lists stay lists, k = all and limit = all are written 'all'. A sequence run
    trains its `sequence`'s tasks, so its `tasks` (the default otherwise) are left out too."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None or name in ("config", "dry_run") or (name == "tasks" and params.get("sequence")):
            continue
        if name == "k":
            value = ["all" if k == ALL_K else k for k in value]
        if isinstance(value, (tuple, list)):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[name.replace("_", "-")] = str(value) if isinstance(value, Path) else value
    if params.get("limit", 0) is None:
        out["limit"] = "all"
    return out
