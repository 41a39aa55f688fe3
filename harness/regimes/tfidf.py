"""`tfidf`: no language model at all — TF-IDF of the rendered inputs and a logistic regression (scikit-learn),
C chosen on dev. The baseline that says what the k examples are worth without pretraining; seconds on a CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from harness.prompts import render_input
from harness.regimes.costs import training_cost
from harness.regimes.objectives import c_grid_setting
from harness.regimes.options import resolve_settings, select_metric_setting, setting
from harness.regimes.probe import fit_probe
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import FitData, Prediction, Template

BYTES_PER_WEIGHT = 8  # float64 coefficients and idf weights, as scikit-learn stores them (not the vocabulary)


@dataclass(frozen=True)
class TfidfSettings:
    """How `tfidf` fits: word n-grams up to ngram_max, sublinear term frequency, the probe's C grid."""

    ngram_max: int = setting(2, "word n-grams up to this length", scope="regime", minimum=1)
    c_grid: tuple[float, ...] = c_grid_setting()
    select_metric: str = select_metric_setting()


class Tfidf:
    """TF-IDF features of the text every regime reads, and the standard probe's logistic regression on them."""

    name = "tfidf"
    settings = TfidfSettings
    prompting = False
    draws_examples = True
    takes_all_k = True
    adapts_backbone = False

    def needs_dev(self, settings: TfidfSettings, templates: int) -> bool:
        return True  # selects C

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[TfidfSettings]:
        return resolve_settings(TfidfSettings(), options, self.name)

    def variant(self, settings: TfidfSettings) -> str:
        return ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: TfidfSettings,
            progress: bool) -> RegimeRun:
        from sklearn.feature_extraction.text import TfidfVectorizer

        started = time.perf_counter()
        texts = {split: [render_input(template, e) for e in examples]
                 for split, examples in (("train", data.train), ("dev", data.dev), ("test", data.test))}
        vectorizer = TfidfVectorizer(ngram_range=(1, settings.ngram_max), sublinear_tf=True)
        train = vectorizer.fit_transform(texts["train"])
        probe = fit_probe(train, [e.label for e in data.train], vectorizer.transform(texts["dev"]),
                          [e.label for e in data.dev], len(data.label_names), settings.c_grid, standardize=False,
                          metric=settings.select_metric)
        test = vectorizer.transform(texts["test"])
        probs = probe.probabilities(test)
        weights = probe.model.coef_.size + probe.model.intercept_.size
        cost = training_cost(
            data, trainable=weights, total=weights, steps=len(settings.c_grid),
            seconds=time.perf_counter() - started,
            # a sparse dot product per class over the input's non-zero features
            inference_flops_per_example=2 * test.nnz / max(test.shape[0], 1) * probe.model.coef_.shape[0],
            stored_bytes=(weights + len(vectorizer.vocabulary_)) * BYTES_PER_WEIGHT)
        details = {"selection": probe.selection("TF-IDF (sublinear tf, word n-grams), L-BFGS logistic regression; "
                                                f"best dev {settings.select_metric}, then dev loss, then the smaller C"),
                   "warnings": probe.warnings, "vocabulary": len(vectorizer.vocabulary_),
                   "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev]}
        predictions = [Prediction(id=x.id, gold=None, probs=tuple(float(v) for v in p)) for x, p in zip(data.test, probs)]
        return RegimeRun(predictions, cost, details)
