"""Whether the chat form helps: each prompting regime's chat variant (`--chat-template`, labelled "(chat)" or
"(<variant>-chat)") beside its plain form, on the same seeds (each seed's dev-selected template) and test items."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from harness.leaderboard.seeds import correctness, per_seed, regime_order
from harness.leaderboard.stats import crossed_interval, holm
from harness.leaderboard.tables import Table

ALPHA = 0.05
_CHAT = re.compile(r"(?P<regime>.+?) \((?:(?P<variant>.+)-)?chat\)")


def plain_of(label: str) -> str | None:
    """The plain label of a chat variant: "<regime> (chat)" -> "<regime>", "<regime> (<variant>-chat)" ->
    "<regime> (<variant>)"; None for a label that is not a chat variant."""
    match = _CHAT.fullmatch(label)
    if match is None:
        return None
    return match["regime"] if match["variant"] is None else f"{match['regime']} ({match['variant']})"


def chat_table(cells: pd.DataFrame, k: int) -> Table:
    """Per task and prompting regime: plain and chat accuracy, their difference on the same seeds and items with a
    crossed t interval, and whether the chat form helps, hurts or shows no difference (Holm over the table)."""
    seeds = per_seed(cells)
    at_k = seeds[((seeds["k"] == k) | ~seeds["seeded"]) & seeds["predictions"].map(bool)]
    found = []
    for (task, label), chat in at_k.groupby(["task", "regime"]):
        plain = plain_of(label)
        base = at_k[(at_k["task"] == task) & (at_k["regime"] == plain)]
        if plain is None or base.empty:
            continue
        by_seed = {_seed_key(s): p for s, p in zip(base["seed"], base["predictions"])}
        pairs = [(by_seed[_seed_key(s)], p) for s, p in zip(chat["seed"], chat["predictions"])
                 if _seed_key(s) in by_seed]
        if not pairs:
            continue
        plain_hits = [correctness(a) for a, _ in pairs]
        chat_hits = [correctness(b) for _, b in pairs]
        ids = plain_hits[0].index
        for series in plain_hits + chat_hits:
            ids = ids.intersection(series.index)
        a = np.array([s.loc[ids].to_numpy() for s in plain_hits])
        b = np.array([s.loc[ids].to_numpy() for s in chat_hits])
        found.append((task, plain, len(pairs), len(ids), a.mean(), b.mean(), crossed_interval(b - a)))
    corrected = holm({str(i): row[-1][3] for i, row in enumerate(found)})
    rows = []
    for i in sorted(range(len(found)), key=lambda i: (found[i][0], regime_order(found[i][1]))):
        task, plain, pairs, items, plain_acc, chat_acc, (delta, low, high, _) = found[i]
        p = corrected[str(i)]
        said = "no difference shown" if p >= ALPHA else ("helps" if delta > 0 else "hurts")
        rows.append([(task, False), (plain, False), (str(pairs), False), (str(items), False),
                     (f"{100 * plain_acc:.1f}", False), (f"{100 * chat_acc:.1f}", False),
                     (f"{100 * delta:+.1f}", False), (f"{100 * low:+.1f} … {100 * high:+.1f}", False),
                     (f"p = {p:.2g}" if p >= 0.001 else "p < 0.001", False), (said, said == "helps")])
    notes = [f"k = {k}. Each prompting regime run with --chat-template (the tokenizer's chat template: demos as "
             "turns, the answer as the assistant's first words) beside the same regime in plain text, on the same "
             "seeds (each seed's dev-selected template) and test items. Δ = chat − plain (points) with a 95 % t "
             "interval for the crossed design (seeds × items, uncorrected); p Holm-corrected over the rows of this "
             "table. "
             "'helps' / 'hurts': the corrected difference excludes 0; bold where the chat form helps."]
    return Table(f"Chat form against plain prompting (k = {k})",
                 ["task", "regime", "seeds", "items", "plain", "chat", "Δ", "95 % t interval", "Holm p",
                  "the chat form"], rows, notes, key="chat")


def _seed_key(seed: float) -> float:
    """Seeds as pairing keys; an unseeded run (one zero-shot run) pairs with the other unseeded run."""
    return -1.0 if seed is None or (isinstance(seed, float) and math.isnan(seed)) else float(seed)
