"""The `harness` command: thin click commands; heavy modules are imported inside them."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from harness import flags
from harness.errors import HarnessError


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
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@cli.command("eval")
@flags.eval_options
@click.pass_context
def eval_command(ctx: click.Context, dry_run: bool, **params: Any) -> None:
    """Evaluate tasks × regimes × k × seeds and write one result file per cell."""
    import yaml

    from harness.results import model_slug, read_run_folder, summary_table, write_atomic
    from harness.runner import run_eval

    config = flags.eval_config(params, shlex.join(["harness", *sys.argv[1:]]))
    out, model = config.out, config.model
    report = run_eval(config, on_cell=_report_cell, progress=True, dry_run=dry_run)
    if dry_run:
        what = "sequence runs" if config.sequence else "cells"
        click.echo(f"{report.planned} {what} to compute, {report.skipped} found on disk (--dry-run: nothing computed)")
        return
    write_atomic(out / "run.yaml", f"# the resolved run of the last command: harness eval --config {out}/run.yaml\n"
                                   + yaml.safe_dump(flags.run_file_values(ctx.params), sort_keys=False))
    if config.sequence:
        return click.echo(f"{report.sequence_table}\n{report.computed} sequence runs computed, {report.skipped} on disk")
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


def _report_cell(cell: Any, result: Any, how: str) -> None:
    where = f"{how:>8}  {cell.task}/{cell.template}/{cell.stem}"
    if how in ("failed", "busy", "planned"):
        click.echo(where + {"failed": f": {result.reason}", "busy": f": being computed by {result.reason}"}.get(how, ""))
        return
    click.echo(f"{where}: accuracy {result.metrics.get('accuracy'):.3f} (n={result.n}, {result.wall_time_s:.1f}s)")


@cli.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default="leaderboard", show_default=True, type=click.Path(path_type=Path))
@click.option("--k", "headline_k", default=16, show_default=True, help="The k of the main table.")
@click.option("--group-by", type=click.Choice(["model"]), default=None, help="One table per model.")
@click.option("--notes", type=click.Path(exists=True, path_type=Path), default=None,
              help="Markdown put at the top of README.md (what the numbers show).")
@click.option("--require", default=None, callback=flags.names, help="Comma-separated regimes a verdict needs: a "
              "task where one did not run is 'incomplete' (default: the regimes these runs hold).")
def leaderboard_command(run_dirs: tuple[Path, ...], out: Path, headline_k: int, group_by: str | None,
                        notes: Path | None, require: list[str] | None) -> None:
    """Build tables, plots, CSV, LaTeX and an HTML page from result folders."""
    from harness.leaderboard.build import build

    built = build(run_dirs, out, headline_k, group_by, notes, require or [])
    for problem in built.problems:
        click.echo(f"note: {problem}", err=True)
    skipped = f" ({built.skipped} result files skipped)" * bool(built.skipped)
    click.echo(f"{built.cells} cells{skipped} -> " + ", ".join(str(f) for f in built.files))


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
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=flags.DATA_DIR_HELP)
@flags.folder_options
def tasks_command(data_dir: str | None) -> None:
    """List tasks with split sizes (from files on disk; hub splits are not downloaded), labels and templates."""
    from harness.validation import describe_tasks

    broken = 0
    for lines, ok in describe_tasks(data_dir):
        click.echo("\n".join(lines))
        broken += not ok
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
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=flags.DATA_DIR_HELP)
@flags.folder_options
def render_command(task_name: str, template: str | None, k: int, seed: int, index: int, data_dir: str | None) -> None:
    """Print exactly the text that is scored, demos included, and the answers."""
    from harness.validation import render_example

    for line in render_example(task_name, template, k, seed, index, data_dir):
        click.echo(line)


@cli.command("validate")
@click.option("--data-dir", envvar="HARNESS_DATA_DIR", default=None, help=flags.DATA_DIR_HELP)
@flags.folder_options
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
