"""Inputs that must fit a token budget are cut inside their longest input field, never in the template's own text:
a boolq or rte prompt keeps its question and its "Answer:" when the passage is long."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence, TypeVar

from harness.prompts import check_length, render_input
from harness.types import Example, FitData, Template, TestInput

E = TypeVar("E", Example, TestInput)
MAX_TRIES = 8  # re-tokenizing after a cut can merge tokens differently; a few passes settle it


def render_within(template: Template, examples: Sequence[E], tokenizer: Any, max_tokens: int,
                  reserve: int = 0, context_tokens: int | None = None) -> list[str]:
    """Each example rendered up to its answer, in at most `max_tokens - reserve` tokens (special tokens counted as
    the tokenizer adds them): an example over the budget loses the end of its longest field, as many tokens as
    it is over. Where even an empty field would not fit, the rendering is returned as it is (the caller's own
    truncation applies). With the model's context_tokens, a rendering far longer than any context is refused
    before it is tokenized (prompts.check_length)."""
    budget = max_tokens - reserve
    texts = [render_input(template, e) for e in examples]
    if context_tokens is not None:
        for example, text in zip(examples, texts):
            check_length(template, example.id, text, context_tokens)
    counts = _counts(tokenizer, texts)
    for i, (example, count) in enumerate(zip(examples, counts)):
        if count > budget:
            texts[i] = _cut_to_fit(template, example, tokenizer, budget, count)
    return texts


def render_splits(template: Template, data: FitData, tokenizer: Any, max_tokens: int,
                  context_tokens: int | None = None) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """What a classifier reads: each split's inputs rendered without the answer, within max_tokens, and the
    train/dev labels."""
    texts = {split: render_within(template, examples, tokenizer, max_tokens, context_tokens=context_tokens)
             for split, examples in (("train", data.train), ("dev", data.dev), ("test", data.test))}
    return texts, {"train": [e.label for e in data.train], "dev": [e.label for e in data.dev]}


def _cut_to_fit(template: Template, example: E, tokenizer: Any, budget: int, count: int) -> str:
    name = max(example.fields, key=lambda f: len(example.fields[f]))
    field = example.fields[name]
    starts = [start for start, _ in tokenizer(field, add_special_tokens=False,
                                              return_offsets_mapping=True)["offset_mapping"]]
    keep = len(starts)
    for _ in range(MAX_TRIES):
        keep -= count - budget
        if keep <= 0:
            return render_input(template, example)
        text = render_input(template, replace(example, fields={**example.fields, name: field[: starts[keep]].rstrip()}))
        count = _counts(tokenizer, [text])[0]
        if count <= budget:
            return text
    return render_input(template, example)


def _counts(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]
