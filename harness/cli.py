"""The `harness` command: thin click commands; heavy modules are imported inside them."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click

from harness.errors import HarnessError
from harness.regimes import DEFAULT_REGIMES


class _Group(click.Group):
    """Turns HarnessError (and Ctrl-C) into one line and a non-zero exit, unless --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)  # one line, whatever the message
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished cells are kept on disk; rerun to continue", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("-v", "--verbose", is_flag=True, help="Log what is loaded and from where.")
@click.version_option(package_name="harness")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Prompt it, train a head, or fine-tune it all: scored on one base model."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _unique(flag: str, values: list[Any], raw: str) -> list[Any]:
    """A list flag names something, and nothing twice (a seed given twice would be counted twice)."""
    if not values:
        raise click.BadParameter(f"{flag} names nothing, got '{raw}'")
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise click.BadParameter(f"{flag} names {', '.join(twice)} more than once, got '{raw}'")
    return values


def _names(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    return _unique(f"--{param.name}", _split_list(value), value)


def _int_list(name: str) -> Callable[[click.Context, click.Parameter, str], list[int]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
        try:
            values = [int(v) for v in _split_list(value)]
        except ValueError:
            raise click.BadParameter(f"{name} must be comma-separated integers, got '{value}'") from None
        return _unique(name, values, value)

    return parse


def _k_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    from harness.types import ALL_K

    try:
        given = [None if v == "all" else int(v) for v in _split_list(value)]
    except ValueError:
        given = []
    ks = [ALL_K if k is None else k for k in given]
    if not ks or any(k is not None and k < 1 for k in given):
        raise click.BadParameter(f"--k must be comma-separated positive integers or 'all', got '{value}'")
    return _unique("--k", ks, value)


def _folders(env: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], None]:
    """--tasks-dir / --prompts-dir: put the folders in front of the search path that the library reads."""
    import os

    def add(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            os.environ[env] = os.pathsep.join([*value, *filter(None, os.environ.get(env, "").split(os.pathsep))])

    return add


def folder_options(command: Callable) -> Callable:
    """The task and template search path, for every command that reads tasks."""
    from harness.catalog import PROMPTS_DIR_ENV, TASKS_DIR_ENV

    command = click.option("--prompts-dir", multiple=True, expose_value=False, callback=_folders(PROMPTS_DIR_ENV),
                           help=f"A folder of <task>/<name>.jinja templates, searched before the shipped ones "
                                f"(repeatable; also ${PROMPTS_DIR_ENV}).")(command)
    return click.option("--tasks-dir", multiple=True, expose_value=False, callback=_folders(TASKS_DIR_ENV),
                        help=f"A folder of task YAML files, searched before the shipped ones (repeatable; also "
                             f"${TASKS_DIR_ENV}).")(command)


def _float_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in _split_list(value)]
    except ValueError:
        raise click.BadParameter(f"must be comma-separated numbers, got '{value}'") from None


def _limit(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"must be a number of examples or 'all', got '{value}'") from None


def _demos(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None or value in ("dev", "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"must be a number of demos per class, 'all' or 'dev', got '{value}'") from None


DATA_DIR_HELP = "Offline mirror: DIR/<task>/<split>.jsonl is read instead of the hub dataset."


# The regime options of `harness eval`: each is a settings field of the regimes that have it (regimes/options.py).
REGIME_OPTIONS = ("batch_size", "unfreeze_top", "pooling", "head_init", "max_tokens", "full_learning_rates",
                  "full_head_learning_rate", "full_max_steps", "full_defaults", "prompt_ft_learning_rates",
                  "prompt_ft_max_steps", "scratch_learning_rates", "scratch_max_steps", "lora_learning_rates", "lora_max_steps",
                  "lora_rank", "lora_alpha", "lora_targets", "lora_scoring", "grad_accum", "gradient_checkpointing", "calibration", "demos", "demo_sets")


@cli.command("eval")
@click.option("--tasks", default="bbc_news", show_default=True, callback=_names, help="Comma-separated task names.")
@click.option("--model", default="smollm2-135m", show_default=True, help="Alias, hub id or local folder of a causal LM.")
@click.option("--regimes", default=",".join(DEFAULT_REGIMES), show_default=True, callback=_names,
              help="Comma-separated regimes.")
@click.option("--k", "k", default="16", show_default=True, callback=_k_list,
              help="Examples per class, comma-separated; 'all' = the whole train split (validation as dev).")
@click.option("--seeds", default="13,21", show_default=True, callback=_int_list("--seeds"), help="Sampling seeds.")
@click.option("--templates", default=None, help="'all', or comma-separated names [default: each task's defaults].")
@click.option("--limit", default="200", show_default=True, callback=_limit, help="Test examples per task, or 'all'.")
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=DATA_DIR_HELP)
@click.option("--out", default="runs", show_default=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--overwrite", is_flag=True, help="Recompute cells already on disk.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model's own Python code to run.")
@click.option("--batch-size", default=None, type=int,
              help="Prompts per forward; head: feature batches; full: examples per micro-batch "
                   "[default: zero-shot/few-shot/head 16, full by device].")
@click.option("--unfreeze-top", default=None, callback=lambda ctx, param, value: None if value is None else
              _int_list("--unfreeze-top")(ctx, param, value),
              help="head: also train the top N blocks; several (0,1,2,4) give one variant each, the freezing-depth "
                   "curve [default: 0].")
@click.option("--pooling", default=None, help="head/full: 'last' non-pad token or 'mean' [default: last].")
@click.option("--head-init", default=None, help="full, head with --unfreeze-top: 'zero', 'verbalizer' rows, or 'probe' (LP-FT) [default: zero].")
@click.option("--max-tokens", default=None, type=int,
              help="head/full: inputs are cut to this many tokens [default: 256].")
@click.option("--full-learning-rates", default=None, callback=_float_list,
              help="full: learning-rate grid, selected on dev [default: by device].")
@click.option("--full-head-learning-rate", default=None, type=float,
              help="full: the new head's own learning rate [default: 1e-3].")
@click.option("--full-max-steps", default=None, type=int,
              help="full: optimizer steps per learning rate, early stopping on dev [default: by device].")
@click.option("--lora-learning-rates", default=None, callback=_float_list,
              help="lora: learning-rate grid, selected on dev [default: by device].")
@click.option("--lora-max-steps", default=None, type=int,
              help="lora: optimizer steps per learning rate, early stopping on dev [default: by device].")
@click.option("--lora-rank", default=None, type=int, help="lora: adapter rank [default: 8].")
@click.option("--lora-alpha", default=None, type=int, help="lora: adapter scale alpha (update x alpha / rank) [default: 16].")
@click.option("--lora-targets", default=None, callback=lambda ctx, param, value: _names(ctx, param, value) if value else None,
              help="lora: comma-separated linear module names in the blocks, or 'all-linear' [default: all-linear].")
@click.option("--lora-scoring", default=None, type=click.Choice(["head", "prompt"]),
              help="lora: a new linear head, or the adapted LM's verbalizer scores as prompt-ft [default: head].")
@click.option("--scratch-learning-rates", default=None, callback=_float_list,
              help="scratch: learning-rate grid, selected on dev [default: by device].")
@click.option("--scratch-max-steps", default=None, type=int,
              help="scratch: optimizer steps per learning rate, early stopping on dev [default: by device].")
@click.option("--prompt-ft-learning-rates", default=None, callback=_float_list,
              help="prompt-ft: learning-rate grid, selected on dev [default: by device].")
@click.option("--prompt-ft-max-steps", default=None, type=int,
              help="prompt-ft: optimizer steps per learning rate, early stopping on dev [default: by device].")
@click.option("--full-defaults", default=None, type=click.Choice(["cpu", "cuda"]),
              help="full/prompt-ft: take this device kind's defaults (grid, steps, batch, dev cadence, patience) "
                   "[default: the device in use].")
@click.option("--grad-accum", default=None, type=int, help="full: micro-batches per optimizer step [default: 1].")
@click.option("--gradient-checkpointing", is_flag=True, default=None, help="full: trade compute for memory.")
@click.option("--demos", default=None, callback=_demos,
              help="few-shot: demos per class in the prompt, drawn from the k; 'all' for every one; 'dev' chooses "
                   "among 1, 2, 4, ... and k on the dev set [default: dev].")
@click.option("--demo-sets", default=None, type=int,
              help="few-shot: demo sets whose log-likelihoods are averaged [default: 1].")
@click.option("--calibration", default=None, callback=lambda ctx, param, value: _names(ctx, param, value) if value else None,
              help="zero-shot/few-shot: none, content-free, dev-prior; several give one variant each [default: none].")
@click.option("--eval-tasks", default=None, callback=lambda ctx, param, value: _names(ctx, param, value) if value else [],
              help="Domain shift: every cell also predicts these tasks' test splits (labels mapped in their task files).")
@click.option("--forgetting", default=None, callback=lambda ctx, param, value: _names(ctx, param, value) if value else [],
              help="Forgetting: after full/lora/prompt-ft/head adapt the model, its zero-shot accuracy on these tasks "
                   "and held-out NLL, against the untouched model.")
@click.option("--forgetting-text", default="bbc_news", show_default=True,
              help="--forgetting: the task whose test-split texts are the held-out text.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Where cells run: one after another here, or as tasks on a Ray cluster (pip install -e '.[ray]').")
@click.option("--address", default=None, help="--executor ray: an existing cluster's address [default: start a local one].")
@click.option("--cpus-per-cell", default=1.0, show_default=True, type=float,
              help="--executor ray: CPUs each worker asks for (its torch threads).")
@click.option("--gpus-per-cell", default=None, type=float,
              help="--executor ray: GPU share each worker asks for, e.g. 0.2 packs five on one GPU [default: 1 with CUDA, else 0].")
@folder_options
def eval_command(tasks: list[str], model: str, regimes: list[str], k: list[int], seeds: list[int], templates: str | None,
                 limit: int | None, data_dir: str | None, out: Path, overwrite: bool, trust_remote_code: bool,
                 eval_tasks: list[str], forgetting: list[str], forgetting_text: str, executor: str,
                 address: str | None, cpus_per_cell: float, gpus_per_cell: float | None, **options: Any) -> None:
    """Evaluate tasks × regimes × k × seeds and write one result file per cell."""
    from harness.results import model_slug, read_run_folder, summary_table, write_atomic
    from harness.runner import EvalConfig, run_eval

    config = EvalConfig(
        tasks=tasks, model=model, regimes=regimes, k=k, seeds=seeds, templates=templates,
        limit=limit, data_dir=data_dir, out=out, overwrite=overwrite, trust_remote_code=trust_remote_code,
        options={name: options[name] for name in REGIME_OPTIONS if options[name] is not None},
        eval_tasks=eval_tasks, forgetting=forgetting, forgetting_text=forgetting_text, executor=executor,
        ray_address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell,
        command=shlex.join(["harness", *sys.argv[1:]]),
    )

    def report_cell(cell: Any, result: Any, how: str) -> None:
        if how == "failed":
            click.echo(f"{how:>8}  {cell.task}/{cell.template}/{cell.stem}: {result.reason}")
            return
        if how == "busy":
            click.echo(f"{how:>8}  {cell.task}/{cell.template}/{cell.stem}: being computed by {result.reason}")
            return
        acc = result.metrics.get("accuracy")
        click.echo(f"{how:>8}  {cell.task}/{cell.template}/{cell.stem}: accuracy {acc:.3f} "
                   f"(n={result.n}, {result.wall_time_s:.1f}s)")

    report = run_eval(config, on_cell=report_cell, progress=True)
    # the summary covers every finished cell of this model in the run folder, not only this invocation's
    table = summary_table(read_run_folder(out / model_slug(model)))
    baselines = "".join(f"majority baseline {task}: {acc:.3f}\n" for task, acc in report.majority.items())
    click.echo("\n" + table + baselines)
    write_atomic(out / "summary.md", f"Every finished cell under {out / model_slug(model)}; last command:\n"
                                     f"`{config.command}`\n\n{table}\n{baselines}")
    failed = f", {report.failed} failed (see their result files)" if report.failed else ""
    busy = f", {report.busy} being computed by another process (rerun later)" if report.busy else ""
    click.echo(f"{report.computed} cells computed, {report.skipped} found on disk{failed}{busy}; "
               f"summary in {out / 'summary.md'}")


@cli.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default="leaderboard", show_default=True, type=click.Path(path_type=Path))
@click.option("--k", "headline_k", default=16, show_default=True, help="The k of the main table.")
@click.option("--group-by", type=click.Choice(["model"]), default=None, help="One table per model.")
@click.option("--notes", type=click.Path(exists=True, path_type=Path), default=None,
              help="Markdown put at the top of README.md (what the numbers show).")
def leaderboard_command(run_dirs: tuple[Path, ...], out: Path, headline_k: int, group_by: str | None,
                        notes: Path | None) -> None:
    """Build tables, plots, CSV, LaTeX and an HTML page from result folders."""
    from harness.leaderboard.build import build

    built = build(run_dirs, out, headline_k, group_by, notes)
    for problem in built.problems:
        click.echo(f"note: {problem}", err=True)
    click.echo(f"{built.cells} cells -> " + ", ".join(str(f) for f in built.files))


@cli.command("verdict")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--budget", "budgets", multiple=True, type=int,
              help="k (labelled examples per class) to decide for; repeatable [default: every k in the runs].")
@click.option("--max-cost", default=None, type=float,
              help="Leave out regimes whose training + 1000 test examples cost more FLOPs than this.")
def verdict_command(run_dirs: tuple[Path, ...], budgets: tuple[int, ...], max_cost: float | None) -> None:
    """Which regime to use, per model, task and k, with its margin, certainty and cost: sentences from the numbers."""
    from harness.leaderboard import tables
    from harness.leaderboard.collect import collect
    from harness.leaderboard.verdict import model_lines, verdict_lines

    collected = collect(run_dirs)
    for problem in collected.problems:
        click.echo(f"note: {problem}", err=True)
    cells = collected.cells
    for model, group in cells.groupby("model"):
        click.echo(f"# {model}\n")
        lines = verdict_lines(group, list(budgets) or None, max_cost,
                              tables.crossover_points(tables.learning_curves(group)))
        for line in lines or ["No task has two regimes with per-example predictions at these k."]:
            click.echo(line.replace("**", "") + "\n")
    if cells["model"].nunique() > 1:
        click.echo("# across models\n")
        ks = list(budgets) or sorted(int(k) for k in cells.loc[cells["seeded"], "k"].unique())
        for line in (line for k in ks for line in model_lines(cells, k)):
            click.echo(line.replace("**", "") + "\n")


@cli.command("tasks")
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=DATA_DIR_HELP)
@folder_options
def tasks_command(data_dir: str | None) -> None:
    """List tasks with split sizes (from files on disk; hub splits are not downloaded), labels and templates."""
    from harness.catalog import search_path
    from harness.prompts import list_templates
    from harness.tasks import describe_splits, list_tasks, load_task

    names = list_tasks()
    if not names:
        raise HarnessError(f"no task files (*.yaml) in {', '.join(map(str, search_path('tasks')))}")
    broken = 0
    for name in names:
        try:
            task = load_task(name)
            sizes = ", ".join(f"{k} {v}" for k, v in describe_splits(task, data_dir).items())
            templates = ", ".join(list_templates(task))
        except HarnessError as exc:
            click.echo(f"FAILED {name}: {exc}")
            broken += 1
            continue
        click.echo(f"{name} (v{task.version}): {sizes}")
        click.echo(f"  labels: {', '.join(task.label_names)}")
        click.echo(f"  templates: {templates} (default: {', '.join(task.templates)})")
    if broken:
        click.echo(f"{broken} task(s) failed to load", err=True)
        sys.exit(1)


@cli.group("prompts")
def prompts_group() -> None:
    """Look at prompt templates."""


@prompts_group.command("render")
@click.argument("task_name", metavar="TASK")
@click.option("--template", default=None, help="Template name [default: the task's first default].")
@click.option("--k", default=0, show_default=True, type=click.IntRange(min=0), help="Demos per class (0: zero-shot).")
@click.option("--seed", default=13, show_default=True, help="Seed of the demo draw.")
@click.option("--index", default=0, show_default=True, type=click.IntRange(min=0), help="Test example index.")
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=DATA_DIR_HELP)
@folder_options
def render_command(task_name: str, template: str | None, k: int, seed: int, index: int, data_dir: str | None) -> None:
    """Print exactly the text that is scored, demos included, and the answers."""
    from harness.prompts import answers, render_input, render_prefix, select_templates
    from harness.sampling import draw_kshot, exclude_self
    from harness.tasks import load_examples, load_task

    task = load_task(task_name)
    chosen = select_templates(task, template)[0] if template else select_templates(task, None)[0]
    test = load_examples(task, "test", data_dir)
    if index >= len(test):
        raise HarnessError(f"--index {index} is past the {len(test)} test examples of '{task.name}'")
    example = test[index]
    demos = draw_kshot(load_examples(task, "train", data_dir), k, seed, task.label_names).train if k else ()
    click.echo(render_prefix(chosen, exclude_self(demos, example)) + render_input(chosen, example))
    click.echo("--- the text above is scored as written (no final newline), followed by one answer per class")
    click.echo(f"# template {chosen.name} ({chosen.path}); example {example.id}, gold '{task.label_names[example.label]}'")
    for label, answer in zip(task.label_names, answers(chosen)):
        click.echo(f"# {label}: {answer!r}")


@cli.command("validate")
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=DATA_DIR_HELP)
@folder_options
def validate_command(data_dir: str | None) -> None:
    """Load every task and template and render one example of each."""
    from harness.validation import validate_all

    problems = 0
    for line, ok in validate_all(data_dir):
        click.echo(("ok     " if ok else "FAILED ") + line)
        problems += not ok
    if problems:
        click.echo(f"{problems} problem(s)", err=True)
        sys.exit(1)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="harness")
