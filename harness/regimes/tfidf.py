"""`tfidf`: no language model at all — TF-IDF of the rendered inputs and a logistic regression (scikit-learn),
C chosen on dev. The baseline that says what the k examples are worth without pretraining; seconds on a CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from harness.prompts import render_input
from harness.regimes.probe import C_GRID, fit_probe
from harness.regimes.protocol import Device, RegimeRun, Shared
from harness.types import Cost, FitData, Prediction, Template

BYTES_PER_WEIGHT = 8  # float64 coefficients and idf weights, as scikit-learn stores them (not the vocabulary)


@dataclass(frozen=True)
class TfidfSettings:
    """How `tfidf` fits: word n-grams up to ngram_max, sublinear term frequency, the probe's C grid."""

    ngram_max: int = 2
    c_grid: tuple[float, ...] = C_GRID


class Tfidf:
    """TF-IDF features of the text every regime reads, and the standard probe's logistic regression on them."""

    name = "tfidf"
    prompting = False
    draws_examples = True
    takes_all_k = True
    adapts_backbone = False

    def needs_dev(self, settings: TfidfSettings, templates: int) -> bool:
        return True  # selects C

    def resolve(self, options: Mapping[str, Any], device: Device) -> tuple[TfidfSettings]:
        return (TfidfSettings(),)

    def variant(self, settings: TfidfSettings) -> str:
        return ""

    def run(self, lm: Any, shared: Shared, template: Template, data: FitData, settings: TfidfSettings, seed: int,
            progress: bool) -> RegimeRun:
        from sklearn.feature_extraction.text import TfidfVectorizer

        started = time.perf_counter()
        texts = {split: [render_input(template, e) for e in examples]
                 for split, examples in (("train", data.train), ("dev", data.dev), ("test", data.test))}
        vectorizer = TfidfVectorizer(ngram_range=(1, settings.ngram_max), sublinear_tf=True)
        train = vectorizer.fit_transform(texts["train"])
        probe = fit_probe(train, [e.label for e in data.train], vectorizer.transform(texts["dev"]),
                          [e.label for e in data.dev], len(data.label_names), settings.c_grid, standardize=False)
        test = vectorizer.transform(texts["test"])
        probs = probe.probabilities(test)
        weights = probe.model.coef_.size + probe.model.intercept_.size
        cost = Cost(
            trainable_parameters=weights, total_parameters=weights, train_examples=len(data.train),
            dev_examples=len(data.dev), train_steps=len(settings.c_grid),
            train_wall_time_s=round(time.perf_counter() - started, 3),
            # a sparse dot product per class over the input's non-zero features
            inference_flops_per_example=2 * test.nnz / max(test.shape[0], 1) * probe.model.coef_.shape[0],
            stored_bytes_per_task=(weights + len(vectorizer.vocabulary_)) * BYTES_PER_WEIGHT,
        )
        details = {"selection": probe.selection("TF-IDF (sublinear tf, word n-grams), L-BFGS logistic regression; "
                                                "best dev accuracy, then dev loss, then the smaller C"),
                   "warnings": probe.warnings, "vocabulary": len(vectorizer.vocabulary_),
                   "train_ids": [e.id for e in data.train], "dev_ids": [e.id for e in data.dev]}
        predictions = [Prediction(id=x.id, gold=None, probs=tuple(float(v) for v in p)) for x, p in zip(data.test, probs)]
        return RegimeRun(predictions, cost, details)
