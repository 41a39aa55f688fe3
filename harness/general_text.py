"""General text: article bodies with their titles, from a task's split, for what forgetting is about.

`--forgetting` measures the held-out NLL on the *test* split's bodies (never trained on); the forgetting
mitigations that train on general text (`--mitigation replay`, `--mitigation ewc`) read the *train* split's
bodies of the same task: disjoint from the measured text, and never any task's evaluation text.
Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Sequence

from harness.tasks import load_examples, load_task

TEXT_TASK = "bbc_news"  # whose article bodies are the general text
TEXT_CHARACTERS = 120_000  # about 30k tokens of SmolLM2's tokenizer
BODY_CHARACTERS = 1_500  # each body cut (at a word) so that title + body fits any context the harness runs


def article_texts(split: str, data_dir: str | None, text_task: str = TEXT_TASK,
                  characters: int = TEXT_CHARACTERS) -> list[tuple[str, str]]:
    """(title, body) pairs of `text_task`'s split, in id order, until about `characters` characters."""
    text = load_task(text_task)
    pairs, used = [], 0
    for example in sorted(load_examples(text, split, data_dir), key=lambda e: e.id):
        title, body = title_and_body([example.fields[f] for f in text.input_fields])
        pairs.append((title, body))
        used += len(title) + len(body)
        if used >= characters:
            break
    return pairs


def title_and_body(fields: Sequence[str]) -> tuple[str, str]:
    """The context (every field but the last; or the body's first word) and the body, cut at a word."""
    *head, body = (" ".join(f.split()) for f in fields)
    if len(body) > BODY_CHARACTERS:
        body = body[:BODY_CHARACTERS].rsplit(" ", 1)[0]
    if head:
        return "\n".join(head) + "\n", body
    first, _, rest = body.partition(" ")
    return first, " " + rest
