"""Forgetting (`--forgetting`): what adapting the backbone to one task costs the language model elsewhere.

After a regime that changes backbone weights has trained (`full`, `lora`, `prompt-ft`, `head`; `head` without
unfrozen blocks changes nothing and must measure exactly 0), the model *as deployed* (tied input and output
embeddings included) is scored on
  (a) held-out text: the negative log-likelihood per token of article bodies given their titles, from a task's
      test split (default: bbc_news, never trained on: every regime trains on train splits only), and
  (b) zero-shot accuracy on other tasks (their first template, their test subset),
each against the untouched model on the same sequences and examples (scored once per run and kept), with a
paired bootstrap interval. Both go through the prompting scorer (packed, prefix-cached): one zero-shot pass per
task and one pass over the text.

Importing this module does not import torch (the runner imports it before anything is loaded).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.general_text import TEXT_TASK, article_texts
from harness.prompts import select_templates
from harness.sampling import select_test_subset
from harness.tasks import load_examples, load_task
from harness.types import Example, Template

BOOTSTRAP_RESAMPLES = 2000


@dataclass
class ProbeTask:
    """A task whose zero-shot accuracy is watched: its first template and test subset."""

    name: str
    template: Template
    examples: list[Example]


@dataclass
class ForgettingProbes:
    """The held-out text and the watched tasks of one run, and the untouched model's scores on them."""

    texts: list[tuple[str, str]]  # (title, body)
    text_source: str  # "<task> test split"
    tasks: list[ProbeTask]
    batch_size: int = 8
    _before: dict[str, Any] = field(default_factory=dict)

    def identity(self, source_task: str) -> dict[str, Any]:
        """What a cell trained on source_task is measured on (a finished cell must have recorded the same)."""
        digest = hashlib.sha256("\n".join(t + "\n" + b for t, b in self.texts).encode()).hexdigest()[:16]
        return {
            "text": {"source": self.text_source, "sequences": len(self.texts), "sha256": digest},
            "tasks": {t.name: {"template": t.template.name, "template_sha256": t.template.sha256,
                               "n": len(t.examples), "ids_sha256": _ids_hash(t.examples)}
                      for t in self.tasks if t.name != source_task},
        }

    def score_untouched(self, lm: Any, progress: bool = False) -> None:
        """The untouched model's scores, once per run: call it before any trained weights are swapped in."""
        if "nll" not in self._before:
            self._before["nll"] = _text_nll(lm.model, lm, self.texts, self.batch_size, progress)
        for task in self.tasks:
            if task.name not in self._before:
                self._before[task.name] = _correct(lm.model, lm, task, self.batch_size, progress)

    def measure(self, adapted: Any, lm: Any, source_task: str, progress: bool = False) -> dict[str, Any]:
        """Held-out NLL per token and zero-shot accuracies of the adapted model against the untouched one
        (score_untouched must have run)."""
        started = time.perf_counter()
        nll_before, tokens = self._before["nll"]
        nll_after, _ = _text_nll(adapted, lm, self.texts, self.batch_size, progress)
        change, ci = _paired_change(nll_before, nll_after, tokens)
        out: dict[str, Any] = {
            "identity": self.identity(source_task),
            "nll_per_token": {"before": sum(nll_before) / sum(tokens), "after": sum(nll_after) / sum(tokens),
                              "change": change, "ci95": ci, "tokens": sum(tokens)},
            "zero_shot": {},
        }
        for task in self.tasks:
            if task.name == source_task:
                continue
            before, predicted = self._before[task.name]
            after, _ = _correct(adapted, lm, task, self.batch_size, progress)
            change, ci = _paired_change(before, after, [1] * len(before))
            out["zero_shot"][task.name] = {"template": task.template.name, "n": len(before),
                                           "before": sum(before) / len(before), "after": sum(after) / len(after),
                                           "change": change, "ci95": ci, "classes": len(task.template.verbalizers),
                                           # a probe the untouched model answers with one class cannot show forgetting
                                           "largest_class_share_before": max(map(predicted.count, set(predicted)))
                                           / len(predicted)}
        out["seconds"] = round(time.perf_counter() - started, 3)
        return out


def forgetting_probes(task_names: Sequence[str], limit: int | None, data_dir: str | None,
                      text_task: str = TEXT_TASK) -> ForgettingProbes:
    """The run's held-out text and watched tasks; an unknown task or missing data is one line, before compute."""
    if not task_names:
        raise HarnessError("--forgetting names no task")
    bodies = article_texts("test", data_dir, text_task)
    tasks = []
    for name in dict.fromkeys(task_names):
        task = load_task(name)
        template = select_templates(task, None)[0]
        tasks.append(ProbeTask(name, template, select_test_subset(load_examples(task, "test", data_dir), limit)))
    return ForgettingProbes(bodies, f"{text_task} test split", tasks)


def _ids_hash(examples: Sequence[Example]) -> str:
    return hashlib.sha256("\n".join(f"{e.id}:{e.label}" for e in examples).encode()).hexdigest()[:16]


def _text_nll(model: Any, lm: Any, texts: Sequence[tuple[str, str]], batch_size: int,
              progress: bool) -> tuple[list[float], list[int]]:
    """Per sequence: the body's summed negative log-likelihood given its title, and its token count."""
    from harness.models import autocast_for
    from harness.scoring import ScoreRequest, score_requests, tokenize_requests

    requests = [ScoreRequest("", title, (body,)) for title, body in texts]
    tokens = [len(u.continuations[0]) for u in tokenize_requests(lm.tokenizer, requests, lm.max_length)]
    with autocast_for(lm.model.device)():
        results = score_requests(model, lm.tokenizer, requests, batch_size, lm.max_length, progress=progress)
    return [-r.logliks[0] for r in results], tokens


def _correct(model: Any, lm: Any, task: ProbeTask, batch_size: int, progress: bool) -> tuple[list[int], list[int]]:
    """Per example: 1 where the zero-shot prediction is right, and the predicted class."""
    from harness.predict import predict_prompting
    from harness.models import autocast_for

    with autocast_for(lm.model.device)():
        run = predict_prompting(model, lm.tokenizer, lm.max_length, task.template, task.examples, (), batch_size,
                                progress)
    return [int(p.pred == e.label) for p, e in zip(run.predictions, task.examples)], [p.pred for p in run.predictions]


def _paired_change(before: Sequence[float], after: Sequence[float],
                   weights: Sequence[int]) -> tuple[float, list[float]]:
    """after − before as a ratio of sums (per token, or per example), with a 95 % paired bootstrap interval
    over sequences or examples (scipy.stats.bootstrap, percentile); [change, change] when nothing varies."""
    import numpy as np
    from scipy import stats

    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    w = np.asarray(weights, dtype=float)
    change = float(diff.sum() / w.sum())
    if len(diff) < 2 or np.all(diff == diff[0]) and np.all(w == w[0]):
        return change, [change, change]
    res = stats.bootstrap((diff, w), lambda d, n, axis=-1: d.sum(axis=axis) / n.sum(axis=axis), paired=True,
                          vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=0)
    return change, [float(res.confidence_interval.low), float(res.confidence_interval.high)]
