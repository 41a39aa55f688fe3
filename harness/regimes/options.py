"""The settings schema: a regime's frozen settings dataclass is the one place its options are declared.

Each field is declared with `setting(...)`: its default, its help (the flag's help text), whether its flag is
shared by every regime that has the field (`--x`) or the regime's own (`--<regime>-x`), its range or choices,
whether a comma list gives one variant each (an *axis*, as `--calibration` or `--unfreeze-top`), and whether it
enters the config hash. The CLI's options (harness/flags.py), the run file, the result's `settings` JSON and the
hash are all derived from these declarations; nothing else lists a regime's options.
"""

from __future__ import annotations

import itertools
import math
import typing
from dataclasses import MISSING, Field, asdict, field, fields, replace
from typing import Any, Callable, Mapping, Sequence, TypeVar

from harness.errors import HarnessError
from harness.metrics import METRICS

POOLINGS = ("last", "mean")  # hidden state of the last non-pad token, or the mean over tokens
# a new head from zeros, from the LM head's rows of the answer tokens, or from the trained probe (LP-FT)
HEAD_INITS = ("zero", "verbalizer", "probe")
DEVICE_KINDS = ("cpu", "cuda")

S = TypeVar("S")


def setting(default: Any, help: str, *, scope: str = "shared", hashed: bool | str = True,
            minimum: float | None = None, above: float | None = None,
            choices: Sequence[str] | Callable[[], Sequence[str]] = (), axis: bool = False) -> Any:
    """A settings field: `scope` "shared" takes the flag --name, "regime" takes --<regime>-name; `hashed` False
    for a field that changes speed, not numbers, "always" for a default that replaced an older one (cells of the
    older default must not match); `minimum` (>=) or `above` (>, and finite) bound a number or every number of a
    list; `choices` the words a string (or an int-or-word field) may take (or a function that lists them when the
    value is checked); `axis`: a list gives one variant each."""
    assert scope in ("shared", "regime")
    metadata = {"help": help, "scope": scope, "hashed": hashed, "minimum": minimum, "above": above,
                "choices": choices if callable(choices) else tuple(choices), "axis": axis}
    return field(default=default, metadata=metadata)


def redefault(settings_type: type, name: str, default: Any) -> Any:
    """Field `name` of `settings_type` as declared there (help, scope, range), with another default: how a regime
    gives a shared field (a Budget's learning rates, say) its own default."""
    declared = settings_type.__dataclass_fields__[name]
    return field(default=default, metadata=declared.metadata)


def select_metric_setting() -> Any:
    """The `select_metric` field every regime that chooses on dev declares (one help text, one flag)."""
    return setting("accuracy", "the metric every choice on the dev set maximises (then the lower dev loss)",
                   choices=lambda: tuple(METRICS))


def meta(f: Field, key: str) -> Any:
    """A field's declared `key` (fields declared without setting() have none)."""
    value = f.metadata.get(key, {"scope": "shared", "hashed": True, "choices": (), "axis": False}.get(key))
    return tuple(value()) if key == "choices" and callable(value) else value


def option_name(f: Field, regime: str) -> str:
    """The option (flag with '_') that sets field f of `regime`'s settings: 'batch_size', 'full_learning_rates'."""
    return f"{regime.replace('-', '_')}_{f.name}" if meta(f, "scope") == "regime" else f.name


def field_types(settings_type: type) -> dict[str, Any]:
    """Each field's resolved annotation (the modules use `from __future__ import annotations`)."""
    return typing.get_type_hints(settings_type)


def resolve_settings(defaults: S, options: Mapping[str, Any], regime: str,
                     device_defaults: Mapping[str, Mapping[str, Any]] | None = None,
                     device_kind: str = "cpu") -> tuple[S, ...]:
    """One settings object per variant: the regime's defaults, then the device kind's defaults (the option
    `device_defaults` may name another kind than the one in use), then every option given for one of its fields,
    each checked against its declared range or choices. An axis field given a list gives one variant per value."""
    names = {f.name for f in fields(defaults)}
    if "device_defaults" in names:
        kind = options.get("device_defaults") or device_kind
        check_choice("--device-defaults", kind, DEVICE_KINDS)
        defaults = replace(defaults, device_defaults=kind, **dict((device_defaults or {}).get(kind, {})))
    given: dict[str, Any] = {}
    for f in fields(defaults):
        value = options.get(option_name(f, regime))
        if value is not None:
            given[f.name] = value
    axes = [f for f in fields(defaults) if meta(f, "axis") and isinstance(given.get(f.name), (list, tuple))]
    variants = []
    for values in itertools.product(*(given[f.name] for f in axes)):
        chosen = {**given, **{f.name: v for f, v in zip(axes, values)}}
        settings = replace(defaults, **{k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()})
        for f in fields(settings):
            check_field(f, getattr(settings, f.name), regime)
        variants.append(settings)
    return tuple(variants)


def check_field(f: Field, value: Any, regime: str) -> None:
    """A value within the field's declared range and choices; else one line naming the flag and the value."""
    flag = "--" + option_name(f, regime).replace("_", "-")
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value and f.default != ():
        raise HarnessError(f"{flag} needs at least one value")
    choices = meta(f, "choices")
    for v in values:
        if isinstance(v, str):
            if choices and v not in choices:
                raise HarnessError(f"unknown {flag} '{v}' (known: {', '.join(choices)})")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        low, above = meta(f, "minimum"), meta(f, "above")
        if not math.isfinite(v):
            raise HarnessError(f"{flag} must be a finite number, got {v}")
        if low is not None and v < low:
            raise HarnessError(f"{flag} must be {low} or more, got {v}")
        if above is not None and v <= above:
            raise HarnessError(f"{flag} must be above {above}, got {v}")


def as_json(settings: Any) -> dict[str, Any]:
    """Every field of a settings dataclass, as the result file records it."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}


def hashed(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that determine results (what the config hash covers).

    A field at its declared default is left out, so that adding an option whose default keeps today's behaviour
    leaves every finished cell valid; a field that differs (a device's default, a flag) is in, and so is a field
    declared hashed="always", whose default changed what cells compute.
    """
    values = as_json(settings)
    return {f.name: values[f.name] for f in fields(settings)
            if meta(f, "hashed") == "always" or (meta(f, "hashed") and values[f.name] != _default(f))}


def _default(f: Any) -> Any:
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    return list(value) if isinstance(value, tuple) else value


def check_choice(flag: str, value: str, known: Sequence[str]) -> None:
    if value not in known:
        raise HarnessError(f"unknown {flag} '{value}' (known: {', '.join(known)})")
