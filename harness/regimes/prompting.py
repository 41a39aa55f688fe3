"""`zero-shot` and `few-shot`: score each class's verbalizer after the rendered prompt."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.backbone import block_parameters
from harness.prompts import answers, render_demo, render_input, render_prefix
from harness.regimes.calibration import CALIBRATIONS, calibrate, content_free_inputs, mean_probabilities
from harness.regimes.options import ALWAYS_HASHED, NOT_HASHED, check_at_least, check_choice, overlay
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.sampling import draw_demo_sets, exclude_self
from harness.types import Cost, Example, FitData, Prediction, Template, TestInput

if TYPE_CHECKING:
    from harness.scoring import ScoreStats

VERIFY_MARGIN = 32  # tokens: prompts estimated this close to the limit are tokenized whole to be sure


@dataclass(frozen=True)
class PromptingSettings:
    """How zero-shot scores."""

    calibration: str = "none"  # --calibration: none, content-free or dev-prior (calibration.py); several: variants
    batch_size: int = field(default=16, metadata=NOT_HASHED)  # --batch-size: prompts packed into one forward


@dataclass(frozen=True)
class FewShotSettings(PromptingSettings):
    """How few-shot scores: how many of the k examples go in the prompt, and over how many demo sets."""

    # --demos: m demos per class in the prompt, drawn from the k; "dev": m chosen on dev from demo_grid(k);
    # "all": every one of the k (the only behaviour of harness 0.2, hence hashed even at its default)
    demos: int | str = field(default="dev", metadata=ALWAYS_HASHED)
    demo_sets: int = 1  # --demo-sets: S demo sets, log-likelihoods averaged (one shared prefix each)


DEMO_CHOICES = ("dev", "all")


def demo_grid(k: int) -> list[int]:
    """The values of m (demos per class) tried on dev: powers of two below k, and k itself."""
    return sorted({2**i for i in range(k.bit_length()) if 2**i < k} | {k})


class Prompting:
    """Score each class's verbalizer after the rendered prompt; few-shot puts the k-per-class demos first."""

    prompting = True

    def __init__(self, name: str, draws_examples: bool):
        self.name, self.draws_examples = name, draws_examples
        # a whole train split does not fit in a prompt; zero-shot at k = all selects on the validation split
        self.takes_all_k = not draws_examples
        self.adapts_backbone = False

    def needs_dev(self, settings: PromptingSettings, templates: int) -> bool:
        # a dev score lets the leaderboard choose the template per seed; dev-prior reads the dev inputs; few-shot
        # chooses its number of demos on it
        return (templates > 1 or settings.calibration == "dev-prior"
                or getattr(settings, "demos", None) == "dev")

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[PromptingSettings, ...]:
        variants = []
        defaults = FewShotSettings() if self.draws_examples else PromptingSettings()
        for method in options.get("calibration") or ["none"]:
            check_choice("calibration", method, CALIBRATIONS)
            settings = overlay(defaults, {**options, "calibration": method}, self.name)
            check_at_least("--batch-size", settings.batch_size, 1)
            if isinstance(settings, FewShotSettings):
                check_at_least("--demo-sets", settings.demo_sets, 1)
                if isinstance(settings.demos, int):
                    check_at_least("--demos", settings.demos, 1)
                else:
                    check_choice("--demos", settings.demos, DEMO_CHOICES)
            variants.append(settings)
        return tuple(variants)

    def variant(self, settings: PromptingSettings) -> str:
        parts = [] if settings.calibration == "none" else [settings.calibration]
        if isinstance(settings, FewShotSettings):
            if settings.demos != "dev":
                parts.append(f"m{settings.demos}")
            if settings.demo_sets > 1:
                parts.append(f"{settings.demo_sets}sets")
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: PromptingSettings,
            seed: int, progress: bool) -> RegimeRun:
        classes = len(data.label_names)
        k = len(data.train) // classes  # 0 for zero-shot, which draws none
        demos, sets = getattr(settings, "demos", "all"), getattr(settings, "demo_sets", 1)
        grid = [0] if not k else demo_grid(k) if demos == "dev" else [k] if demos == "all" else [demos]
        tried = []
        for m in grid:
            demo_sets = _demo_sets(data, m, sets, seed)
            tried.append(_Candidate(m, demo_sets, _scorer(lm, shared, template, demo_sets, settings.batch_size)))
        for candidate in tried:
            candidate.score_dev(data, settings)
        chosen = min(tried, key=_Candidate.rank) if data.dev else tried[0]
        run = chosen.score(data.test, progress)
        preds, details = _calibrated(run.predictions, chosen.prior), {}
        if chosen.reference is not None:
            details["calibration"] = {"method": settings.calibration, "prior": list(chosen.prior),
                                      "inputs": len(chosen.reference.predictions),
                                      "tokens": chosen.reference.stats.tokens,
                                      "forward_passes": chosen.reference.stats.forwards}
        if chosen.dev_predictions:  # only the leaderboard's choice of template reads it
            details["selection"] = _dev_scores(chosen.dev_predictions, [e.label for e in data.dev])
            details["dev_ids"] = [e.id for e in data.dev]
        if len(tried) > 1:
            details["demos_selection"] = {
                "rule": "m demos per class with the best dev accuracy, then dev loss, then the fewest",
                "grid": grid, "chosen": chosen.m, "edge": chosen.m in (grid[0], grid[-1]),
                "dev_accuracy": [c.dev["dev_accuracy"] for c in tried], "dev_loss": [c.dev["dev_loss"] for c in tried]}
        demo_sets = chosen.demo_sets
        in_prompt = len(demo_sets[0])
        details.update(
            effective_k={"requested": in_prompt // classes, "min": min(p.n_demos for p in preds) / classes,
                         "mean": sum(p.n_demos for p in preds) / len(preds) / classes},
            context={"max_length": lm.max_length,
                     "examples_with_demos_dropped": sum(p.n_demos < in_prompt for p in preds),
                     "examples_truncated_left": sum(p.truncated_tokens > 0 for p in preds)},
            demo_ids=[e.id for e in data.train],
            # what this cell ran: the test pass with its demos, and every dev and calibration pass of every m tried
            tokens_processed=run.stats.tokens + sum(c.spent.tokens for c in tried),
            forward_passes=run.stats.forwards + sum(c.spent.forwards for c in tried),
        )
        if len(demo_sets) > 1 or in_prompt < len(data.train):
            details["demo_sets"] = [[e.id for e in demo_set] for demo_set in demo_sets]
        cost = Cost(
            # what an uncached forward over the whole prompt, demos included, costs per test example
            inference_flops_per_example=2 * block_parameters(lm.model) * sum(p.prompt_tokens for p in preds) / len(preds),
            total_parameters=sum(p.numel() for p in lm.model.parameters()),
        )
        return RegimeRun(preds, cost, details)


def _demo_sets(data: FitData, per_class: int, sets: int, seed: int) -> list[tuple[Example, ...]]:
    if not per_class:
        return [()]
    return draw_demo_sets(data.train, per_class, sets, seed, len(data.label_names))


@dataclass
class _Candidate:
    """One number of demos per class: its demo sets' scorer, its calibration prior and its dev scores."""

    m: int
    demo_sets: list[tuple[Example, ...]]
    score: Any  # inputs -> PromptingRun after every demo set, cached per run
    prior: tuple[float, ...] | None = None  # None: uncalibrated
    reference: PromptingRun | None = None  # the inputs the prior was estimated on
    dev_predictions: list[Prediction] = field(default_factory=list)
    dev: dict[str, Any] = field(default_factory=dict)
    spent: ScoreStats | None = None  # dev and calibration passes

    def score_dev(self, data: FitData, settings: PromptingSettings) -> None:
        from harness.scoring import ScoreStats

        dev = self.score(data.dev) if data.dev else None  # with the same demos
        self.spent = ScoreStats(dev.stats.tokens, dev.stats.forwards) if dev else ScoreStats()
        if settings.calibration != "none":
            self.reference = dev if settings.calibration == "dev-prior" else self.score(
                content_free_inputs(data.test[0].fields))
            self.prior = mean_probabilities([p.probs for p in self.reference.predictions])
            if settings.calibration != "dev-prior":
                self.spent.tokens += self.reference.stats.tokens
                self.spent.forwards += self.reference.stats.forwards
        if dev:
            self.dev_predictions = _calibrated(dev.predictions, self.prior)
            self.dev = _dev_scores(self.dev_predictions, [e.label for e in data.dev])

    def rank(self) -> tuple[float, float, int]:
        return (-self.dev["dev_accuracy"], self.dev["dev_loss"], self.m)


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


def _calibrated(predictions: Sequence[Prediction], prior: Sequence[float] | None) -> list[Prediction]:
    """The same scores, probabilities divided by the prior (so the prediction may change); None: unchanged."""
    if prior is None:
        return list(predictions)
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
