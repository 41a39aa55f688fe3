"""`zero-shot` and `few-shot`: score each class's verbalizer after the rendered prompt (harness/predict.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.backbone import block_parameters
from harness.metrics import dev_scores, selection_key
from harness.predict import PromptingRun, count_tokens, joined_demo_tokens, predict_prompting, softmax
from harness.prompts import render_input
from harness.regimes.calibration import CALIBRATIONS, calibrate, content_free_inputs, mean_probabilities
from harness.regimes.options import resolve_settings, select_metric_setting, setting
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.sampling import draw_demo_sets
from harness.types import Cost, Example, FitData, Prediction, Template

if TYPE_CHECKING:
    from harness.scoring import ScoreStats


@dataclass(frozen=True)
class PromptingSettings:
    """How zero-shot scores."""

    calibration: str = setting("none", "divide out the label words' prior: none, content-free, dev-prior; several "
                                       "give one variant each", choices=CALIBRATIONS, axis=True)
    batch_size: int = setting(16, "prompts packed into one forward", hashed=False, minimum=1)
    chat_template: bool = setting(False, "render prompts through the tokenizer's chat template: demos as turns, the "
                                         "answer as the assistant's first words (an instruct model's own format)")
    select_metric: str = select_metric_setting()


DEMO_CHOICES = ("dev", "all")


@dataclass(frozen=True)
class FewShotSettings(PromptingSettings):
    """How few-shot scores: how many of the k examples go in the prompt, and over how many demo sets."""

    # "all" was the only behaviour of harness 0.2, hence hashed even at its default
    demos: int | str = setting("dev", "demos per class in the prompt, drawn from the k; 'all' for every one; 'dev' "
                                      "chooses among 1, 2, 4, ... and k on the dev set", hashed="always",
                               minimum=1, choices=DEMO_CHOICES)
    demo_sets: int = setting(1, "demo sets whose log-likelihoods are averaged", minimum=1)


log = logging.getLogger(__name__)
LARGE_DEV_PASS_TOKENS = 5_000_000  # dev passes planned above this many tokens are announced as a warning


def demo_grid(k: int) -> list[int]:
    """The values of m (demos per class) tried on dev: powers of two below k, and k itself."""
    return sorted({2**i for i in range(k.bit_length()) if 2**i < k} | {k})


class Prompting:
    """Score each class's verbalizer after the rendered prompt; few-shot puts the k-per-class demos first."""

    prompting = True
    adapts_backbone = False

    def __init__(self, name: str, draws_examples: bool):
        self.name, self.draws_examples = name, draws_examples
        self.settings = FewShotSettings if draws_examples else PromptingSettings
        # a whole train split does not fit in a prompt; zero-shot at k = all selects on the validation split
        self.takes_all_k = not draws_examples

    def needs_dev(self, settings: PromptingSettings, templates: int) -> bool:
        # a dev score lets the leaderboard choose the template per seed; dev-prior reads the dev inputs; few-shot
        # chooses its number of demos on it
        return (templates > 1 or settings.calibration == "dev-prior"
                or getattr(settings, "demos", None) == "dev")

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[PromptingSettings, ...]:
        return resolve_settings(self.settings(), options, self.name)

    def variant(self, settings: PromptingSettings) -> str:
        parts = ([] if settings.calibration == "none" else [settings.calibration]) + (
            ["chat"] if settings.chat_template else [])
        if isinstance(settings, FewShotSettings):
            if settings.demos != "dev":
                parts.append(f"m{settings.demos}")
            if settings.demo_sets > 1:
                parts.append(f"{settings.demo_sets}sets")
        return "-".join(parts)

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: PromptingSettings,
            progress: bool) -> RegimeRun:
        classes = len(data.label_names)
        k = data.k if self.draws_examples else 0  # zero-shot draws none
        demos, sets = getattr(settings, "demos", "all"), getattr(settings, "demo_sets", 1)
        grid = [0] if not k else demo_grid(k) if demos == "dev" else [k] if demos == "all" else [demos]
        dropped = []
        if demos == "dev" and k:
            grid, dropped = _fitting_grid(lm, template, data, grid, sets)
        tried = []
        for m in grid:
            demo_sets = _demo_sets(data, m, sets)
            tried.append(_Candidate(m, demo_sets, _scorer(lm, shared, template, demo_sets, settings.batch_size,
                                                          settings.chat_template)))
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
            details["selection"] = _template_selection(chosen.dev)
            details["dev_ids"] = [e.id for e in data.dev]
        if len(tried) > 1 or dropped:
            details["demos_selection"] = {
                "rule": f"m demos per class with the best dev {settings.select_metric}, then dev loss, then the fewest",
                "grid": grid, "chosen": chosen.m, "edge": chosen.m in (grid[0], grid[-1]), "configurations": len(tried),
                **({"not_tried": dropped, "why": "their demos do not fit the model's context"} if dropped else {}),
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


def _fitting_grid(lm: Any, template: Template, data: FitData, grid: list[int],
                  sets: int) -> tuple[list[int], list[int]]:
    """The values of m whose demos (at the k examples' mean length) fit the model's context with an average input
    — more demos would be dropped from every prompt, so trying them on dev only costs time — and those left out.
    The planned cost of the dev passes is logged before they run."""
    classes = len(data.label_names)
    per_demo = sum(joined_demo_tokens(lm.tokenizer, template, data.train).values()) / len(data.train)
    inputs = count_tokens(lm.tokenizer, [render_input(template, e) for e in data.dev or data.train])
    per_input = sum(inputs) / len(inputs)
    fits = [m for m in grid if m * classes * per_demo + per_input <= lm.max_length] or grid[:1]
    planned = sum(len(data.dev) * sets * min(m * classes * per_demo + per_input, lm.max_length) for m in fits)
    level = logging.WARNING if planned > LARGE_DEV_PASS_TOKENS else logging.INFO
    log.log(level, "few-shot %s k=%d: choosing m on dev tries m in %s (%d dev prompts each, about %s tokens before "
            "the test set)%s", data.task, data.k, fits, len(data.dev), f"{planned:,.0f}",
            f"; m in {[m for m in grid if m not in fits]} would not fit the {lm.max_length}-token context"
            if len(fits) < len(grid) else "")
    return fits, [m for m in grid if m not in fits]


def _demo_sets(data: FitData, per_class: int, sets: int) -> list[tuple[Example, ...]]:
    if not per_class:
        return [()]
    return draw_demo_sets(data.train, per_class, sets, data.seed, len(data.label_names))


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
            self.dev = dev_scores(settings.select_metric, [e.label for e in data.dev],
                                  [p.probs for p in self.dev_predictions])

    def rank(self) -> tuple[float, float, int]:
        score, negative_loss = selection_key(self.dev)
        return (-score, -negative_loss, self.m)


def _scorer(lm: Any, shared: Shared, template: Template, demo_sets: Sequence[tuple[Example, ...]],
            batch_size: int, chat: bool = False) -> Any:
    """inputs -> their PromptingRun after every demo set, ensembled. The same inputs after the same demos score
    the same, so each (template, demo set, inputs) is scored once per run: calibrated variants reuse the scores."""

    def one(inputs: Sequence[Any], demo_set: tuple[Example, ...], bar: bool) -> PromptingRun:
        key = (template.sha256, chat, tuple(d.id for d in demo_set),
               tuple((x.id, tuple(x.fields.items())) for x in inputs))
        if key not in shared.scores:
            shared.scores[key] = predict_prompting(lm.model, lm.tokenizer, lm.max_length, template, inputs, demo_set,
                                                   batch_size, bar, chat)
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


def _template_selection(dev: dict[str, Any]) -> dict[str, Any]:
    """The chosen m's dev scores: what the leaderboard's per-seed choice of template reads."""
    return {"rule": "the leaderboard picks, per seed, the template with the best dev score, then dev loss, then the "
                    "first by name", **dev}


ZERO_SHOT = Prompting("zero-shot", draws_examples=False)
FEW_SHOT = Prompting("few-shot", draws_examples=True)
