"""`zero-shot` and `few-shot`: score each class's verbalizer after the rendered prompt."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.backbone import block_parameters
from harness.prompts import answers, render_demo, render_input, render_prefix
from harness.regimes.calibration import CALIBRATIONS, calibrate, content_free_inputs, mean_probabilities
from harness.regimes.options import NOT_HASHED, check_at_least, check_choice, overlay
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.sampling import draw_demo_sets, exclude_self
from harness.types import Cost, Example, FitData, Prediction, Template, TestInput

if TYPE_CHECKING:
    from harness.scoring import ScoreStats

VERIFY_MARGIN = 32  # tokens: prompts estimated this close to the limit are tokenized whole to be sure


@dataclass(frozen=True)
class PromptingSettings:
    """How zero-shot and few-shot score."""

    calibration: str = "none"  # --calibration: none, content-free or dev-prior (calibration.py); several: variants
    demos: int | None = None  # --demos: m demos per class in the prompt, drawn from the k (None: all k)
    demo_sets: int = 1  # --demo-sets: S demo sets, log-likelihoods averaged (one shared prefix each)
    batch_size: int = field(default=16, metadata=NOT_HASHED)  # --batch-size: prompts packed into one forward


class Prompting:
    """Score each class's verbalizer after the rendered prompt; few-shot puts the k-per-class demos first."""

    prompting = True
    takes_all_k = False  # a whole train split does not fit in a prompt

    def __init__(self, name: str, draws_examples: bool):
        self.name, self.draws_examples = name, draws_examples

    def needs_dev(self, settings: PromptingSettings, templates: int) -> bool:
        # a dev score lets the leaderboard choose the template per seed; dev-prior reads the dev inputs
        return templates > 1 or settings.calibration == "dev-prior"

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[PromptingSettings, ...]:
        variants = []
        for method in options.get("calibration") or ["none"]:
            check_choice("calibration", method, CALIBRATIONS)
            settings = overlay(PromptingSettings(), {**options, "calibration": method}, self.name)
            check_at_least("--batch-size", settings.batch_size, 1)
            check_at_least("--demo-sets", settings.demo_sets, 1)
            if settings.demos is not None:
                check_at_least("--demos", settings.demos, 1)
            variants.append(settings)
        return tuple(variants)

    def variant(self, settings: PromptingSettings) -> str:
        parts = [] if settings.calibration == "none" else [settings.calibration]
        if self.draws_examples and settings.demos is not None:
            parts.append(f"m{settings.demos}")
        if self.draws_examples and settings.demo_sets > 1:
            parts.append(f"{settings.demo_sets}sets")
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: PromptingSettings,
            seed: int, progress: bool) -> RegimeRun:
        demos = data.train  # empty for zero-shot, which draws none
        demo_sets = [()] if not demos else draw_demo_sets(
            demos, settings.demos or len(demos) // len(data.label_names), settings.demo_sets, seed,
            len(data.label_names))
        score = _scorer(lm, shared, template, demo_sets, settings.batch_size)
        run = score(data.test, progress)
        dev = score(data.dev) if data.dev else None  # with the same demos
        preds, dev_preds, details = run.predictions, dev.predictions if dev else [], {}
        if settings.calibration != "none":
            reference = dev if settings.calibration == "dev-prior" else score(content_free_inputs(data.test[0].fields))
            prior = mean_probabilities([p.probs for p in reference.predictions])
            preds, dev_preds = _calibrated(preds, prior), _calibrated(dev_preds, prior)
            details["calibration"] = {"method": settings.calibration, "prior": list(prior),
                                      "inputs": len(reference.predictions), "tokens": reference.stats.tokens,
                                      "forward_passes": reference.stats.forwards}
        if dev_preds:  # only the leaderboard's choice of template reads it
            details["selection"] = _dev_scores(dev_preds, [e.label for e in data.dev])
            details["dev_ids"] = [e.id for e in data.dev]
        classes, in_prompt = len(template.verbalizers), len(demo_sets[0])
        details.update(
            effective_k={"requested": in_prompt // classes, "min": min(p.n_demos for p in preds) / classes,
                         "mean": sum(p.n_demos for p in preds) / len(preds) / classes},
            context={"max_length": lm.max_length,
                     "examples_with_demos_dropped": sum(p.n_demos < in_prompt for p in preds),
                     "examples_truncated_left": sum(p.truncated_tokens > 0 for p in preds)},
            demo_ids=[e.id for e in demos], tokens_processed=run.stats.tokens, forward_passes=run.stats.forwards,
        )
        if len(demo_sets) > 1 or in_prompt < len(demos):
            details["demo_sets"] = [[e.id for e in demo_set] for demo_set in demo_sets]
        cost = Cost(
            # what an uncached forward over the whole prompt, demos included, costs per test example
            inference_flops_per_example=2 * block_parameters(lm.model) * sum(p.prompt_tokens for p in preds) / len(preds),
            total_parameters=sum(p.numel() for p in lm.model.parameters()),
        )
        return RegimeRun(preds, cost, details)


def _scorer(lm: Any, shared: Shared, template: Template, demo_sets: Sequence[tuple[Example, ...]],
            batch_size: int) -> Any:
    """inputs -> their PromptingRun after every demo set, ensembled. The same inputs after the same demos score
    the same, so each (template, demo set, inputs) is scored once per run: calibrated variants reuse the scores."""

    def one(inputs: Sequence[Any], demo_set: tuple[Example, ...], bar: bool) -> PromptingRun:
        key = (template.sha256, tuple(d.id for d in demo_set), tuple((x.id, tuple(x.fields.items())) for x in inputs))
        if key not in shared.scores:
            shared.scores[key] = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, inputs, demo_set,
                                                   batch_size, bar)
        return shared.scores[key]

    def score(inputs: Sequence[Any], bar: bool = False) -> PromptingRun:
        return ensemble([one(inputs, demo_set, bar) for demo_set in demo_sets])

    return score


def ensemble(runs: Sequence[PromptingRun]) -> PromptingRun:
    """One run from several demo sets: per example, the class log-likelihoods averaged (then softmaxed); the
    prompt counts summed over sets (each set's prompt is run), the fewest demos kept."""
    if len(runs) == 1:
        return runs[0]
    from harness.scoring import ScoreStats

    merged = []
    for preds in zip(*(r.predictions for r in runs)):
        scores = tuple(sum(column) / len(preds) for column in zip(*(p.scores for p in preds)))
        norms = tuple(sum(column) / len(preds) for column in zip(*(p.scores_norm for p in preds)))
        merged.append(replace(preds[0], probs=softmax(scores), scores=scores, scores_norm=norms,
                              n_demos=min(p.n_demos for p in preds), prompt_tokens=sum(p.prompt_tokens for p in preds),
                              truncated_tokens=max(p.truncated_tokens for p in preds)))
    stats = ScoreStats(tokens=sum(r.stats.tokens for r in runs), forwards=sum(r.stats.forwards for r in runs))
    return PromptingRun(merged, stats)


def _calibrated(predictions: Sequence[Prediction], prior: Sequence[float]) -> list[Prediction]:
    """The same scores, probabilities divided by the prior (so the prediction may change)."""
    return [replace(p, probs=calibrate(p.probs, prior)) for p in predictions]


def _dev_scores(predictions: Sequence[Prediction], golds: Sequence[int]) -> dict[str, Any]:
    """Dev accuracy and log-loss of one template: the leaderboard's per-seed choice, ties broken by the loss."""
    return {"rule": "the leaderboard picks, per seed, the template with the best dev accuracy, then dev loss, "
                    "then the first by name",
            "dev_accuracy": sum(p.pred == g for p, g in zip(predictions, golds)) / len(golds),
            "dev_loss": -sum(math.log(max(p.probs[g], 1e-12)) for p, g in zip(predictions, golds)) / len(golds)}


ZERO_SHOT = Prompting("zero-shot", draws_examples=False)
FEW_SHOT = Prompting("few-shot", draws_examples=True)


@dataclass
class PromptingRun:
    """Predictions in input order, and what scoring them cost."""

    predictions: list[Prediction]
    stats: ScoreStats


def predict_prompting(model: Any, tokenizer: Any, max_length: int, template: Template,
                      examples: Sequence[Example | TestInput], demos: Sequence[Example], batch_size: int,
                      progress: bool = False) -> PromptingRun:
    """Zero-shot when `demos` is empty; few-shot otherwise, with the same demos (in the same order) for all.

    Predictions carry no gold label: the examples may be test inputs, whose labels a regime never holds.
    """
    from harness.scoring import ScoreRequest, ScoreStats, score_requests

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
            id=ex.id, gold=None, probs=softmax(res.logliks), scores=res.logliks,
            scores_norm=tuple(s / n for s, n in zip(res.logliks, lengths)),
            n_demos=len(kept), truncated_tokens=res.truncated_tokens, prompt_tokens=res.prompt_tokens,
        )
        for ex, kept, res in zip(examples, demos_per_example, results)
    ]
    return PromptingRun(predictions, stats)


def fit_demos(tokenizer: Any, max_length: int, template: Template, examples: Sequence[Example | TestInput],
              demos: Sequence[Example], choices: Sequence[str]) -> list[tuple[Example, ...]]:
    """Each example's demos: its own row removed, then the earliest demos dropped until the prompt fits.

    Counted as the scorer tokenizes: the demos joined into one string (a demo tokenized alone ends in a
    separator that merges differently, e.g. "\n\n" is one token at the end of a string and two before text),
    and every prompt within VERIFY_MARGIN tokens of the limit tokenized whole, answers included.
    """
    if not demos:
        return [() for _ in examples]
    from harness.scoring import leading_special_ids

    demo_tokens = _joined_demo_tokens(tokenizer, template, demos)
    contexts = [render_input(template, ex) for ex in examples]
    context_tokens = _count_tokens(tokenizer, contexts)
    leading = len(leading_special_ids(tokenizer))  # a BOS the scorer puts first
    answer_tokens = max(_count_tokens(tokenizer, list(choices)))
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


def _joined_demo_tokens(tokenizer: Any, template: Template, demos: Sequence[Example]) -> dict[str, int]:
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
    return max(_count_tokens(tokenizer, [prefix + choice for choice in choices]))


def _count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def softmax(scores: Sequence[float]) -> tuple[float, ...]:
    """Probabilities over the choices from their log-likelihoods."""
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return tuple(e / total for e in exps)
