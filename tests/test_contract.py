"""One contract for every registered regime (as scikit-learn's check_estimator runs one over every estimator): the
Protocol, the settings as the one schema (flag -> settings -> JSON -> hash), determinism, and that no test label
reaches it. A regime added to REGISTRY is checked here without a line of its own."""

import dataclasses
import random
import typing

import pytest

from harness import regimes
from harness.cells import draw_for, fit_data
from harness.cli import cli
from harness.regimes.features import FeatureStore
from harness.regimes.options import as_json, field_types, hashed, meta, option_name
from harness.regimes.protocol import Device, Shared
from harness.prompts import load_template
from harness.tasks import load_examples, load_task
from harness.types import Cell

CPU = Device("cpu", "float32")
NAMES = list(regimes.REGISTRY)
# options under which every field of a regime has an effect (head's --head-init needs top blocks to start)
CONTEXT = {"head": {"unfreeze_top": 1}}
# fields that only act together with another (the mitigation's strengths need a mitigation)
NEEDS = {"mitigation_strengths": {"mitigation": "l2sp"}}


def _fast(name):
    """Options that keep a tiny model's cell to a second."""
    prefix = name.replace("-", "_")
    return {f"{prefix}_max_steps": 2, "batch_size": 4, "c_grid": [0.1, 1.0], f"{prefix}_eval_every": 1}


def _other_value(f, kind, current):
    """A valid value of field f that is not its current one."""
    choices = meta(f, "choices")
    if kind is bool:
        return not current
    if choices and isinstance(current, str):
        return next(c for c in choices if c != current)
    args = typing.get_args(kind)
    if int in args and str in args:
        return 2
    if args and args[-1] is Ellipsis:
        return (0.5, 2.0) if args[0] is float else ("q_proj",)
    if kind is int:
        return current + 1
    if kind is float:
        return current * 2 if current else 0.5
    return current


def _flag_text(value):
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("name", NAMES)
def test_the_protocol(name):
    regime = regimes.REGISTRY[name]
    assert regime.name == name
    assert dataclasses.is_dataclass(regime.settings) and regime.settings.__dataclass_params__.frozen
    for attribute in ("prompting", "draws_examples", "takes_all_k", "adapts_backbone"):
        assert isinstance(getattr(regime, attribute), bool), attribute
    settings = regime.resolve({}, CPU)
    assert settings and all(isinstance(s, regime.settings) for s in settings)
    assert isinstance(regime.variant(settings[0]), str) and isinstance(regime.needs_dev(settings[0], 1), bool)


@pytest.mark.parametrize("name", NAMES)
def test_every_settings_field_round_trips_from_its_flag_to_the_json_and_the_hash(name):
    regime = regimes.REGISTRY[name]
    command = cli.commands["eval"]
    flags = {opt for p in command.params for opt in p.opts}
    kinds = field_types(regime.settings)
    context = CONTEXT.get(name, {})
    default = regime.resolve(context, CPU)[0]
    for f in dataclasses.fields(regime.settings):
        option = option_name(f, name)
        flag = "--" + option.replace("_", "-")
        assert flag in flags, f"{flag} is not an option of harness eval"
        value = _other_value(f, kinds[f.name], getattr(default, f.name))
        args = [flag] if kinds[f.name] is bool else [flag, _flag_text(value)]
        ctx = command.make_context("eval", args)
        parsed = {**context, **NEEDS.get(f.name, {}),
                  **{k: v for k, v in ctx.params.items() if v is not None and k == option}}
        resolved = regime.resolve(parsed, CPU)[0]
        assert getattr(resolved, f.name) == value, (flag, getattr(resolved, f.name), value)
        recorded = as_json(resolved)[f.name]
        assert recorded == (list(value) if isinstance(value, tuple) else value)
        if f.name == "device_defaults":
            continue  # it changes the other fields' defaults: they are hashed, it is not
        baseline = regime.resolve({**context, **NEEDS.get(f.name, {})}, CPU)[0]
        changed = hashed(resolved) != hashed(baseline)
        assert changed == bool(meta(f, "hashed")), f"{flag}: hashed is declared {meta(f, 'hashed')}"
        assert hashed(regime.resolve(parsed, CPU)[0]) == hashed(resolved)  # the same settings, the same hash


def _cell_data(name, regime, settings, shuffle_test_labels=False):
    task = load_task("toy")
    cell = Cell("toy", "cloze", name, 2, 13)
    test = load_examples(task, "test")
    if shuffle_test_labels:
        labels = [e.label for e in test]
        random.Random(0).shuffle(labels)
        test = [dataclasses.replace(e, label=1 - e.label) for e in test]
    draw = draw_for(cell, regime, settings, 1, load_examples(task, "train"), [], task)
    return fit_data(draw, test, task, cell)


@pytest.mark.parametrize("name", NAMES)
def test_runs_deterministically_and_never_sees_a_test_label(name, toy_env, loaded):
    regime = regimes.REGISTRY[name]
    settings = regime.resolve(_fast(name), CPU)[0]
    template = load_template(load_task("toy"), "cloze")

    def run(shuffle):
        data = _cell_data(name, regime, settings, shuffle)
        assert all(not hasattr(x, "label") for x in data.test)  # the inputs carry no label
        return regime.run(loaded, Shared(FeatureStore(loaded.model, loaded.tokenizer)), template, data, settings,
                          False)

    first, again, flipped = run(False), run(False), run(True)
    assert [p.id for p in first.predictions] == [e.id for e in load_examples(load_task("toy"), "test")]
    assert all(p.gold is None and abs(sum(p.probs) - 1) < 1e-5 for p in first.predictions)
    assert [p.probs for p in first.predictions] == [p.probs for p in again.predictions]
    assert [p.probs for p in first.predictions] == [p.probs for p in flipped.predictions]
    if first.deployed is not None:  # what forgetting measures: the LM with the training in it, undone on exit
        state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
        with first.deployed(loaded.model) as deployed:
            assert hasattr(deployed, "get_output_embeddings")
        assert all((v == loaded.model.state_dict()[k]).all() for k, v in state.items())
