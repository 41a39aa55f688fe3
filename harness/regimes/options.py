"""CLI options -> a regime's settings dataclass, one spelling from flag to JSON.

A settings field `x` takes the option `x` (flag `--x`, shared by every regime that has the field) or, first,
`<regime>_x` (flag `--<regime>-x`, that regime's alone). An option left unset (None) keeps the regime's default.
Fields marked `field(metadata=NOT_HASHED)` change how fast a cell runs, not its numbers: they are recorded
but left out of the config hash.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields, replace
from typing import Any, Mapping, Sequence, TypeVar

from harness.errors import HarnessError

POOLINGS = ("last", "mean")  # hidden state of the last non-pad token, or the mean over tokens
# a new head from zeros, from the LM head's rows of the answer tokens, or from the trained probe (LP-FT)
HEAD_INITS = ("zero", "verbalizer", "probe")
NOT_HASHED = {"hashed": False}
ALWAYS_HASHED = {"hashed": "always"}  # a default that replaced an older one: cells of the older one must not match

S = TypeVar("S")


def overlay(defaults: S, options: Mapping[str, Any], regime: str) -> S:
    """`defaults` with every option that names one of its fields and was given (lists become tuples)."""
    prefix = regime.replace("-", "_") + "_"
    given = {}
    for f in fields(defaults):
        value = options.get(prefix + f.name, options.get(f.name))
        if value is not None:
            given[f.name] = tuple(value) if isinstance(value, list) else value
    return replace(defaults, **given)


def as_json(settings: Any) -> dict[str, Any]:
    """Every field of a settings dataclass, as the result file records it."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}


def hashed(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that determine results (what the config hash covers).

    A field at its declared default is left out, so that adding an option whose default keeps today's behaviour
    leaves every finished cell valid; a field that differs (a device's default, a flag) is in, and so is a field
    marked ALWAYS_HASHED, whose default changed what cells compute.
    """
    values = as_json(settings)
    return {f.name: values[f.name] for f in fields(settings)
            if f.metadata.get("hashed") == "always" or (f.metadata.get("hashed", True) and values[f.name] != _default(f))}


def _default(f: Any) -> Any:
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    return list(value) if isinstance(value, tuple) else value


def check_choice(flag: str, value: str, known: Sequence[str]) -> None:
    if value not in known:
        raise HarnessError(f"unknown {flag} '{value}' (known: {', '.join(known)})")


def check_at_least(flag: str, value: float, low: float) -> None:
    if value < low:
        raise HarnessError(f"{flag} must be {low} or more, got {value}")
