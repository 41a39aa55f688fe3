"""`zero-shot` and `few-shot`: score each class's verbalizer after the rendered prompt."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from harness.prompts import answers, render_demo, render_input, render_prefix
from harness.sampling import exclude_self
from harness.scoring import ScoreRequest, ScoreStats, score_requests
from harness.types import Example, Prediction, Template

FIT_MARGIN = 8  # tokens: demos are counted one by one, the whole prompt may tokenize a little longer


@dataclass
class PromptingRun:
    """Predictions in input order, and what scoring them cost."""

    predictions: list[Prediction]
    stats: ScoreStats


def predict_prompting(model: Any, tokenizer: Any, max_length: int, template: Template, examples: Sequence[Example],
                      demos: Sequence[Example], batch_size: int, progress: bool = False) -> PromptingRun:
    """Zero-shot when `demos` is empty; few-shot otherwise, with the same demos (in the same order) for all."""
    choices = tuple(answers(template))
    demos_per_example = fit_demos(tokenizer, max_length, template, examples, demos, choices)
    requests = [
        ScoreRequest(render_prefix(template, kept), render_input(template, ex), choices)
        for ex, kept in zip(examples, demos_per_example)
    ]
    stats = ScoreStats()
    results = score_requests(model, tokenizer, requests, batch_size, max_length, stats, progress)
    lengths = [len(c) for c in choices]
    predictions = [
        Prediction(
            id=ex.id, gold=ex.label, probs=softmax(res.logliks), scores=res.logliks,
            scores_norm=tuple(s / n for s, n in zip(res.logliks, lengths)),
            n_demos=len(kept), truncated_tokens=res.truncated_tokens, prompt_tokens=res.prompt_tokens,
        )
        for ex, kept, res in zip(examples, demos_per_example, results)
    ]
    return PromptingRun(predictions, stats)


def fit_demos(tokenizer: Any, max_length: int, template: Template, examples: Sequence[Example],
              demos: Sequence[Example], choices: Sequence[str]) -> list[tuple[Example, ...]]:
    """Each example's demos: its own row removed, then the earliest demos dropped until the prompt fits."""
    if not demos:
        return [() for _ in examples]
    demo_texts = [render_demo(template, d) + template.separator for d in demos]
    demo_tokens = dict(zip((d.id for d in demos), _count_tokens(tokenizer, demo_texts)))
    context_tokens = _count_tokens(tokenizer, [render_input(template, ex) for ex in examples])
    answer_tokens = max(_count_tokens(tokenizer, list(choices)))
    kept_per_example = []
    for ex, n_context in zip(examples, context_tokens):
        kept = list(exclude_self(demos, ex))
        budget = max_length - n_context - answer_tokens - FIT_MARGIN
        total = sum(demo_tokens[d.id] for d in kept)
        while kept and total > budget:
            total -= demo_tokens[kept.pop(0).id]
        kept_per_example.append(tuple(kept))
    return kept_per_example


def _count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def softmax(scores: Sequence[float]) -> tuple[float, ...]:
    """Probabilities over the choices from their log-likelihoods."""
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return tuple(e / total for e in exps)
