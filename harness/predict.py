"""Class predictions from a causal LM's answer scores: each class's verbalizer scored after a rendered prompt
(demos first, if any). The zero-shot and few-shot regimes, prompt-ft's trained copy and the forgetting probes all
predict through it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from harness.prompts import answers, check_length, render_demo, render_input, render_prefix
from harness.sampling import exclude_self
from harness.types import Example, Prediction, Template, TestInput

if TYPE_CHECKING:
    from harness.scoring import ScoreStats

VERIFY_MARGIN = 32  # tokens: prompts estimated this close to the limit are tokenized whole to be sure


@dataclass
class PromptingRun:
    """Predictions in input order, and what scoring them cost."""

    predictions: list[Prediction]
    stats: ScoreStats


def predict_prompting(model: Any, tokenizer: Any, max_length: int, template: Template,
                      examples: Sequence[Example | TestInput], demos: Sequence[Example], batch_size: int,
                      progress: bool = False, chat: bool = False) -> PromptingRun:
    """Zero-shot when `demos` is empty; few-shot otherwise, with the same demos (in the same order) for all.
    chat: the prompt goes through the tokenizer's chat template (each demo a user turn and the assistant's label
    word, the example the last user turn), and each class's answer is the assistant's first words (its label word,
    without the template's delimiter) — as the instruct model was trained, and as lm-eval's
    --apply_chat_template --fewshot_as_multiturn scores.

    Predictions carry no gold label: the examples may be test inputs, whose labels a regime never holds.
    """
    from harness.scoring import ScoreRequest, ScoreStats, score_requests

    choices = tuple(template.verbalizers) if chat else tuple(answers(template))
    contexts = [check_length(template, ex.id, render_input(template, ex), max_length) for ex in examples]
    demos_per_example = fit_demos(tokenizer, max_length, template, examples, demos, tuple(answers(template)),
                                  contexts)
    if chat:
        requests = [chat_request(tokenizer, template, kept, context, choices)
                    for context, kept in zip(contexts, demos_per_example)]
    else:
        requests = [ScoreRequest(render_prefix(template, kept), context, choices)
                    for context, kept in zip(contexts, demos_per_example)]
    stats = ScoreStats()
    results = score_requests(model, tokenizer, requests, batch_size, max_length, stats, progress)
    lengths = [len(c) for c in choices]
    predictions = [
        Prediction(
            id=ex.id, gold=None, probs=softmax(res.logliks), scores=res.logliks,
            scores_norm=tuple(s / n for s, n in zip(res.logliks, lengths)),
            n_demos=len(kept), truncated_tokens=res.truncated_tokens, prompt_tokens=res.prompt_tokens,
        )
        for ex, kept, res in zip(examples, demos_per_example, results)
    ]
    return PromptingRun(predictions, stats)


def chat_request(tokenizer: Any, template: Template, demos: Sequence[Example], context: str,
                 choices: Sequence[str]) -> Any:
    """One chat-formatted prompt: the demos' turns are the shared prefix (the chat template renders a conversation
    as the concatenation of its turns), the example's user turn and the assistant's opening the context."""
    from harness.errors import HarnessError
    from harness.scoring import ScoreRequest

    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError("--chat-template: the model's tokenizer has no chat template")
    turns = [turn for d in demos for turn in ({"role": "user", "content": render_input(template, d)},
                                              {"role": "assistant", "content": template.verbalizers[d.label]})]
    whole = tokenizer.apply_chat_template([*turns, {"role": "user", "content": context}], tokenize=False,
                                          add_generation_prompt=True)
    prefix = tokenizer.apply_chat_template(turns, tokenize=False) if turns else ""
    if not whole.startswith(prefix):  # a template that rewrites earlier turns: no shared prefix
        prefix = ""
    return ScoreRequest(prefix, whole[len(prefix):], tuple(choices))


def fit_demos(tokenizer: Any, max_length: int, template: Template, examples: Sequence[Example | TestInput],
              demos: Sequence[Example], choices: Sequence[str],
              contexts: Sequence[str] | None = None) -> list[tuple[Example, ...]]:
    """Each example's demos: its own row removed, then the earliest demos dropped until the prompt fits.

    Counted as the scorer tokenizes: the demos joined into one string (a demo tokenized alone ends in a
    separator that merges differently, e.g. "\n\n" is one token at the end of a string and two before text),
    and every prompt within VERIFY_MARGIN tokens of the limit tokenized whole, answers included.
    """
    if not demos:
        return [() for _ in examples]
    from harness.scoring import leading_special_ids

    demo_tokens = joined_demo_tokens(tokenizer, template, demos)
    if contexts is None:  # the examples rendered, unless the caller has them already
        contexts = [render_input(template, ex) for ex in examples]
    context_tokens = count_tokens(tokenizer, list(contexts))
    leading = len(leading_special_ids(tokenizer))  # a BOS the scorer puts first
    answer_tokens = max(count_tokens(tokenizer, list(choices)))
    kept_per_example = []
    for ex, context, n_context in zip(examples, contexts, context_tokens):
        kept = list(exclude_self(demos, ex))
        total = leading + sum(demo_tokens[d.id] for d in kept) + n_context + answer_tokens
        while kept and total > max_length:
            total -= demo_tokens[kept.pop(0).id]
        if total > max_length - VERIFY_MARGIN:
            while kept and leading + _prompt_tokens(tokenizer, template, kept, context, choices) > max_length:
                kept.pop(0)
        kept_per_example.append(tuple(kept))
    return kept_per_example


def joined_demo_tokens(tokenizer: Any, template: Template, demos: Sequence[Example]) -> dict[str, int]:
    """Per demo id, the tokens that start inside its text when all demos are tokenized as one prefix."""
    pieces = [render_demo(template, d) + template.separator for d in demos]
    offsets = tokenizer("".join(pieces), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [start for start, _ in offsets]
    counts, bound, position = {}, 0, 0
    for demo, piece in zip(demos, pieces):
        bound += len(piece)
        first = position
        while position < len(starts) and starts[position] < bound:
            position += 1
        counts[demo.id] = position - first
    return counts


def _prompt_tokens(tokenizer: Any, template: Template, demos: Sequence[Example], context: str,
                   choices: Sequence[str]) -> int:
    """Tokens of the whole prompt with its longest answer, tokenized as the scorer does."""
    prefix = render_prefix(template, demos) + context
    return max(count_tokens(tokenizer, [prefix + choice for choice in choices]))


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def softmax(scores: Sequence[float]) -> tuple[float, ...]:
    """Probabilities over the choices from their log-likelihoods."""
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return tuple(e / total for e in exps)
