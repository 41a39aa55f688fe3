"""Continual learning (`harness eval --sequence sst2,agnews,trec`): one model trained task after task.

For each regime (variant), k and seed, the regime trains on the first task from the pretrained weights, then on the
second from what the first left, and so on (a mitigation's anchor is the model each step starts from). After each
step the model as deployed scores every task of the sequence with that task's first template, as zero-shot does:
the accuracy matrix R[j][i] (after training on task j, accuracy on task i), with the untouched model's accuracies b_i,
and Lopez-Paz & Ranzato's (2017) summaries, paired by seed:

    ACC = mean_i R[T-1][i]      BWT = mean_{i<T-1} (R[T-1][i] - R[i][i])      FWT = mean_{i>0} (R[i-1][i] - b_i)

A regime that predicts with the LM itself (prompt-ft, `lora --lora-scoring prompt`, ...) scores every task at every
step. A regime with a new head per task (full, bitfit, lora, ia3: multi-head, task-incremental) keeps each task's
head and reads it on the later weights; a task whose head is not trained yet has no entry (R[j][i] for i > j is
None), so its FWT is not defined. Adapters are merged into the weights before the next step trains. Each sequence run
is one JSON under `<out>/sequences/<model>/<task-task-...>/<regime>_k<k>_seed<seed>.json`; a finished one is kept
(resumable).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.cells import fit_data
from harness.errors import HarnessError
from harness.results import model_slug, write_atomic
from harness.types import Cell

SEQUENCES = "sequences"  # the folder under --out


@dataclass
class SequenceRun:
    """One regime (variant), k and seed trained through the sequence."""

    regime: str  # its label, variant included
    k: int
    seed: int
    tasks: list[str]
    matrix: list[list[float | None]]  # R[j][i]: after training on tasks[j], accuracy on tasks[i] (None: no head yet)
    untouched: list[float]  # b_i: the pretrained model's accuracy on tasks[i]
    step_accuracy: list[float] = field(default_factory=list)  # each step's own cell, as its regime predicted it
    config: dict[str, Any] = field(default_factory=dict)  # what determines its numbers: a rerun must match it

    @property
    def acc(self) -> float:
        return sum(self.matrix[-1]) / len(self.tasks)

    @property
    def bwt(self) -> float:
        last = len(self.tasks) - 1
        return sum(self.matrix[last][i] - self.matrix[i][i] for i in range(last)) / last

    @property
    def fwt(self) -> float | None:
        later = [self.matrix[i - 1][i] for i in range(1, len(self.tasks))]
        if any(a is None for a in later):  # a new head per task: no accuracy before its task
            return None
        return sum(a - self.untouched[i] for i, a in enumerate(later, start=1)) / (len(self.tasks) - 1)

    def as_json(self) -> dict[str, Any]:
        return {"regime": self.regime, "k": self.k, "seed": self.seed, "tasks": self.tasks, "matrix": self.matrix,
                "untouched": self.untouched, "step_accuracy": self.step_accuracy, "config": self.config,
                "acc": self.acc, "bwt": self.bwt, "fwt": self.fwt}


def check_sequence(session: Any) -> None:
    """Every regime of the run can be scored on every task of the sequence; else one line naming it."""
    if len(session.config.sequence) < 2:
        raise HarnessError("--sequence needs at least two tasks, e.g. --sequence sst2,agnews,trec")
    for name, regime in session.plan.regimes.items():
        for settings in session.plan.settings[name].values():
            objective = getattr(regime, "objective", None)
            source = getattr(regime, "source", None)
            if not (regime.adapts_backbone and objective is not None and not getattr(source, "reads_features", True)):
                raise HarnessError(f"--sequence: {name} cannot be trained task after task in one model (it trains "
                                   "no backbone weights, or only top blocks on cached features); use full, "
                                   "prompt-ft, lora, ia3 or bitfit")


def run_sequences(session: Any, progress: bool = False,
                  on_run: Callable[[SequenceRun, str], None] | None = None) -> list[SequenceRun]:
    """Every regime (variant) x k x seed of the session through its sequence; finished runs are read back."""
    tasks = list(session.config.sequence)
    runs, untouched = [], None
    for name, settings, first, path in planned_sequences(session):
        config = _determining(session, name, settings, first)
        if path.is_file() and not session.config.overwrite:
            runs.append(SequenceRun(**{key: value for key, value in json.loads(path.read_text()).items()
                                       if key not in ("acc", "bwt", "fwt")}))
            if runs[-1].config != config:
                from harness.session import differences

                raise HarnessError(f"{path}: holds a sequence run of another configuration "
                                   f"({differences(runs[-1].config, config) or 'none recorded'}); use --overwrite "
                                   "or another --out")
            if on_run:
                on_run(runs[-1], "skipped")
            continue
        lm = session.load()
        untouched = untouched or [_accuracy(lm, session.data[t], settings.batch_size) for t in tasks]
        runs.append(_train_through(session, session.plan.regimes[name], settings, first.label, first.k, first.seed,
                                   tasks, untouched, progress))
        runs[-1].config = config
        write_atomic(path, json.dumps(runs[-1].as_json(), indent=1) + "\n")
        if on_run:
            on_run(runs[-1], "computed")
    return runs


def _determining(session: Any, name: str, settings: Any, first: Cell) -> dict[str, Any]:
    """Per task, what determines its step's numbers, as for a cell of that task (settings, device and dtype, model,
    template and test set): a finished run is reused only if every step's is equal."""
    regime = session.plan.regimes[name]
    return {t: session.resolved(session.data[t], Cell(t, session.data[t].templates[0].name, name, first.k, first.seed,
                                                      regime.variant(settings)))["determining"]
            for t in session.config.sequence}


def planned_sequences(session: Any) -> list[tuple[str, Any, Cell, Path]]:
    """(regime, settings, the sequence's first cell, its file) for every regime (variant) x k x seed of the run."""
    check_sequence(session)
    tasks = list(session.config.sequence)
    folder = Path(session.config.out) / SEQUENCES / model_slug(session.config.model) / "-".join(tasks)
    planned = []
    for name in session.plan.regimes:
        for variant, settings in session.plan.settings[name].items():
            for k in session.config.k:
                for seed in session.config.seeds:
                    first = Cell(tasks[0], session.data[tasks[0]].templates[0].name, name, k, seed, variant)
                    planned.append((name, settings, first, folder / f"{first.stem}.json"))
    return planned


def _train_through(session: Any, regime: Any, settings: Any, label: str, k: int, seed: int, tasks: Sequence[str],
                   untouched: list[float], progress: bool) -> SequenceRun:
    from harness.regimes.features import FeatureStore
    from harness.regimes.protocol import Shared

    current = session.load()
    run = SequenceRun(label, k, seed, list(tasks), [], untouched)
    heads: list[Callable[[Any, Any], list[Any]]] = []  # a new head per task: each task's, in order
    for task in tasks:
        d = session.data[task]
        template = d.templates[0]
        cell = Cell(task, template.name, regime.name, k, seed, regime.variant(settings))
        trained = regime.run(current, Shared(FeatureStore(current.model, current.tokenizer)), template,
                             fit_data(session.draws[cell], d.test, d.task, cell), settings, progress)
        gold = {e.id: e.label for e in d.test}
        run.step_accuracy.append(sum(p.pred == gold[p.id] for p in trained.predictions) / len(d.test))
        with trained.deployed(current.model) as deployed:
            adapted = copy.deepcopy(deployed).eval()
        scored = replace(current, model=adapted)
        if trained.head_on is None:  # the LM itself answers every task
            run.matrix.append([_accuracy(scored, session.data[t], settings.batch_size) for t in tasks])
        else:  # each task's own head, on the weights as they are now; none yet for the tasks to come
            heads.append(trained.head_on)
            run.matrix.append([_head_accuracy(heads[i], scored, session.data[t]) if i < len(heads) else None
                               for i, t in enumerate(tasks)])
        current = replace(current, model=_merged(adapted))  # the next step trains these weights themselves
    return run


def _merged(model: Any) -> Any:
    """The model with any peft adapters merged into its weights (a peft model, or tuner layers swapped into a
    causal LM): the next task trains plain weights."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # without peft there are no adapters to merge
        return model
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    return model


def _head_accuracy(head_on: Callable[[Any, Any], list[Any]], lm: Any, d: Any) -> float:
    predictions = head_on(lm, d.test)
    return sum(p.pred == e.label for p, e in zip(predictions, d.test)) / len(d.test)


def _accuracy(lm: Any, d: Any, batch_size: int) -> float:
    """The model's zero-shot accuracy on a task's test subset, with the task's first template."""
    from harness.models import autocast_for
    from harness.predict import predict_prompting

    with autocast_for(lm.model.device)():
        scored = predict_prompting(lm.model, lm.tokenizer, lm.max_length, d.templates[0], d.test, (), batch_size)
    return sum(p.pred == e.label for p, e in zip(scored.predictions, d.test)) / len(d.test)


def sequence_table(runs: Sequence[SequenceRun]) -> str:
    """Markdown: per regime, the mean accuracy matrix over seeds, then ACC, BWT and FWT (mean ± sample std)."""
    import statistics

    lines = []
    for label in dict.fromkeys(r.regime for r in runs):
        group = [r for r in runs if r.regime == label]
        tasks = group[0].tasks
        lines += [f"{label}, k = {group[0].k}, seeds {', '.join(str(r.seed) for r in group)}: accuracy % after "
                  "training on the row's task (rows: the sequence in order; untouched: the pretrained model)", "",
                  "| after \\ on | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks),
                  "| untouched | " + " | ".join(f"{100 * group[0].untouched[i]:.1f}" for i in range(len(tasks))) + " |"]
        for j, task in enumerate(tasks):
            cells = [None if group[0].matrix[j][i] is None else statistics.mean(r.matrix[j][i] for r in group)
                     for i in range(len(tasks))]
            lines.append(f"| {task} | " + " | ".join("—" if c is None else f"{100 * c:.1f}" for c in cells) + " |")
        summary = []
        for name in ("acc", "bwt", "fwt"):
            values = [100 * v for v in (getattr(r, name) for r in group) if v is not None]
            if not values:
                summary.append(f"{name.upper()} — (no head before its task)")
                continue
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            summary.append(f"{name.upper()} {statistics.mean(values):{'.1f' if name == 'acc' else '+.1f'}}{spread}")
        lines += ["", "; ".join(summary) + " (points; ACC is an accuracy)", ""]
    return "\n".join(lines)
