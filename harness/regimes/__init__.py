"""The regimes: an explicit registry of name -> regime, and the small Protocol each one meets.

A regime owns everything about itself: its settings (a frozen dataclass, the one schema of its flags, run-file
keys, JSON and config hash), whether it draws examples and needs a dev set, its variant name, how it runs one
cell and what that cost. Nothing outside this package asks "is this `full`?"; it asks the regime. Importing this
package never imports torch (the leaderboard reads it): regimes import their heavy code inside `run`.

Adding a regime is one module here and one line in REGISTRY (its flags come from its settings).
"""

from __future__ import annotations

import math
import re

from harness.errors import HarnessError
from harness.regimes import bitfit, full, head, ia3, lora, prompt_ft, prompting, scratch, soft_prompt, tfidf
from harness.regimes.protocol import Regime


# The order is the order of tables.
REGISTRY: dict[str, Regime] = {
    "zero-shot": prompting.ZERO_SHOT,
    "few-shot": prompting.FEW_SHOT,
    "head": head.Head(),
    "full": full.FULL,
    "prompt-ft": prompt_ft.PROMPT_FT,
    "prompt-tuning": soft_prompt.PROMPT_TUNING,
    "prefix": soft_prompt.PREFIX,
    "lora": lora.LORA,
    "ia3": ia3.IA3,
    "bitfit": bitfit.BITFIT,
    "scratch": scratch.SCRATCH,
    "tfidf": tfidf.Tfidf(),
}


# What `harness eval` runs when --regimes is not given: the four that fit the default run's time on 2 CPU cores.
DEFAULT_REGIMES = ("zero-shot", "few-shot", "head", "full")


def get_regime(name: str) -> Regime:
    """The registered regime called `name`; anything else is one line listing the registered ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise HarnessError(f"unknown regime '{name}' (known: {', '.join(REGISTRY)})") from None


def regime_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def order_of(name: str) -> int:
    """Position in tables; regimes this version does not know go last."""
    names = list(REGISTRY)
    return names.index(name) if name in names else len(names)


def is_prompting(name: str) -> bool:
    return name in REGISTRY and REGISTRY[name].prompting


def seeded(regime: Regime, settings: object, templates: int) -> bool:
    """Whether the regime's cells take a k and a seed: it learns from the k-shot draw, or it selects on its dev
    set (zero-shot comparing templates). Otherwise one cell per template, with no k and no seed."""
    return regime.draws_examples or regime.needs_dev(settings, templates)


def in_context_reference() -> str | None:
    """The prompting regime that learns from the k examples in context (few-shot): fine-tuning's comparison."""
    return next((n for n, r in REGISTRY.items() if r.prompting and r.draws_examples), None)


def untouched_reference() -> str | None:
    """The prompting regime that learns nothing (zero-shot): the untouched model's score, what gains are over."""
    return next((n for n, r in REGISTRY.items() if r.prompting and not r.draws_examples), None)


def no_transfer_reference() -> str | None:
    """The regime that trains the model's architecture from random weights (scratch): the transfer gain's
    baseline — the one trained regime with nothing pretrained to forget."""
    return next((n for n, r in REGISTRY.items() if not r.prompting and getattr(r, "source", None) is not None
                 and getattr(r.source, "weights", None) == "fresh"), None)


def freezing_depth(label: str) -> float | None:
    """How many top blocks a cell's regime trains, from its table label: `head` 0, `head (top2)` 2, `full` every
    one (inf); None for every other regime or variant (mean pooling, another init, ...)."""
    if label == "full":
        return math.inf
    if label == "head":
        return 0
    match = re.fullmatch(r"head \(top(\d+)\)", label)
    return int(match.group(1)) if match else None
