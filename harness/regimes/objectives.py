"""What a trained regime's backbone learns to predict: the other part of its composition (trained.py).

- `NewHead(zero_std)`: a new linear head on the pooled hidden states (`full`, `lora`, `scratch`, `ia3`, `head
  --unfreeze-top`), trained by cross-entropy over the classes; its settings' `head_init` picks the start
  (zeros-like N(0, zero_std), the verbalizer rows, or the trained probe: LP-FT);
- `ANSWER_SCORES`: no new parameters: the cross-entropy over the classes' answer log-likelihoods after the
  template (prompt-ft's objective; `lora --lora-scoring prompt`), predicted by the zero-shot scorer on the trained LM.

An objective prepares a cell's data for its source (`prepare`: the inputs, labels, batches, dev logits), wraps the
source's trained module (`wrap`: the model and its parameter groups) and predicts the test inputs (`predict`).
torch is imported when a cell trains: the registry that names these parts is read by the torch-free leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.prompts import answers, first_answer_tokens
from harness.regimes.options import HEAD_INITS, POOLINGS, setting
from harness.regimes.probe import C_GRID
from harness.truncation import render_splits, render_within
from harness.types import FitData, Prediction, Template


def pooling_setting() -> Any:
    return setting("last", "what the new head reads: the hidden state of the 'last' non-pad token, or the 'mean'",
                   choices=POOLINGS)


def head_init_setting() -> Any:
    return setting("zero", "the new head's start: 'zero' (small random), 'verbalizer' (the LM head's rows of the "
                           "answer tokens) or 'probe' (the trained probe: LP-FT)", choices=HEAD_INITS)


def head_learning_rate_setting() -> Any:
    # harness 0.2 moved the head with the backbone's rate, so it stayed near its random start: hashed always
    return setting(1e-3, "the new head's own learning rate", scope="regime", hashed="always", above=0)


def c_grid_setting(hashed: bool | str = True) -> Any:
    return setting(C_GRID, "the probe's C grid (inverse L2 strength), selected on dev", hashed=hashed, above=0)


@dataclass
class Prepared:
    """One cell's training data as an objective and a source read it."""

    inputs: dict[str, list[Any]]  # per split (train, dev, test): what the model reads of each example
    labels: dict[str, list[int]]  # train and dev
    make_batch: Callable[[list[int]], tuple]  # training rows -> (inputs, mask, labels)
    lengths: list[int]  # tokens per training example (length-grouped batches)
    dev_logits: Callable[[Any], Any]  # model -> (dev examples, classes) logits
    dev_labels: Any  # tensor
    test_tokens: int = 0  # tokens of the test inputs as the classifier reads them (new head)
    frozen_tokens: int = 0  # train and dev tokens through the frozen blocks (a head on cached features)
    probe: Any = None  # the trained probe a head starts from (--head-init probe)


class NewHead:
    """A new linear head on the source's pooled hidden states."""

    whole_lm = False

    def __init__(self, zero_std: float):
        self.zero_std = zero_std  # a "zero" head's start: N(0, zero_std); 0 is exact zeros

    def prepare(self, lm: Any, shared: Any, template: Template, data: FitData, settings: Any, source: Any,
                progress: bool) -> Prepared:
        import torch

        from harness.models import autocast_for
        from harness.regimes.classifier import predict_logits
        from harness.regimes.probe import train_probe
        from harness.regimes.training import pack_rows, pad_rows

        texts, labels = render_splits(template, data, lm.tokenizer, settings.max_tokens, lm.max_length)
        init = getattr(settings, "head_init", "zero")
        probe = (train_probe(shared.features, texts, labels, len(data.label_names), settings, progress)
                 if init == "probe" else None)
        inputs = {split: source.encode(lm, shared, texts[split], settings, progress) for split in texts}
        device, pad = lm.model.device, lm.tokenizer.pad_token_id

        packs = getattr(settings, "pack", False) and not source.reads_features

        def make_batch(rows: list[int]) -> tuple:
            chosen = [inputs["train"][i] for i in rows]
            batch, mask = pack_rows(chosen, device) if packs else pad_rows(chosen, pad, device)
            return batch, mask, torch.tensor([labels["train"][i] for i in rows], device=device)

        tokens = {split: sum(len(x) for x in inputs[split]) for split in inputs}  # as the classifier reads them
        return Prepared(inputs, labels, make_batch, [len(x) for x in inputs["train"]],
                        lambda model: predict_logits(model, inputs["dev"], pad, device, settings.batch_size,
                                                     autocast_for(device)),
                        torch.tensor(labels["dev"], device=device), test_tokens=tokens["test"],
                        frozen_tokens=tokens["train"] + tokens["dev"], probe=probe)

    def wrap(self, lm: Any, source: Any, module: Any, prepared: Prepared, template: Template, settings: Any,
             classes: int) -> tuple[Any, list[dict[str, Any]]]:
        """The classifier and its AdamW groups: the head on its own learning rate where the settings give one."""
        from harness.regimes.classifier import SequenceClassifier, new_head

        model = lm.model
        head = new_head(model.get_output_embeddings(), first_answer_tokens(lm.tokenizer, template),
                        model.config.hidden_size, classes, getattr(settings, "head_init", "zero"), prepared.probe,
                        self.zero_std, model.device)
        classifier = SequenceClassifier(source.body(model, module), module, head, settings.pooling).to(model.device)
        trained = [p for p in module.parameters() if p.requires_grad]
        if getattr(settings, "head_learning_rate", None) is None:
            return classifier, [{"params": trained + list(head.parameters())}]
        return classifier, [{"params": trained}, {"params": list(head.parameters()), "lr": settings.head_learning_rate}]

    def predict(self, lm: Any, template: Template, trained: Any, prepared: Prepared, data: FitData, settings: Any,
                progress: bool) -> tuple[list[Prediction], float]:
        """Test predictions without labels, and the tokens one test input costs the deployed model."""
        import torch

        from harness.models import autocast_for
        from harness.regimes.classifier import predict_logits

        device = lm.model.device
        logits = predict_logits(trained, prepared.inputs["test"], lm.tokenizer.pad_token_id, device,
                                settings.batch_size, autocast_for(device))
        probs = torch.softmax(logits, -1).tolist()
        return ([Prediction(id=x.id, gold=None, probs=tuple(p)) for x, p in zip(data.test, probs)],
                prepared.test_tokens / len(data.test))


    def head_on(self, lm: Any, template: Template, trained: Any, settings: Any, examples: Any) -> list[Prediction]:
        """The trained head on another causal LM's decoder (its own weights, e.g. after later training): the
        examples rendered and read as in training, then the head's class probabilities."""
        import torch

        from harness.backbone import anatomy
        from harness.models import autocast_for
        from harness.regimes.classifier import SequenceClassifier, predict_logits
        from harness.regimes.sources import PRETRAINED

        texts = render_within(template, list(examples), lm.tokenizer, settings.max_tokens,
                              context_tokens=lm.max_length)
        inputs = PRETRAINED.encode(lm, None, texts, settings, False)  # as the head's training inputs were
        decoder = anatomy(lm.model).decoder
        classifier = SequenceClassifier(PRETRAINED.body(lm.model, decoder), decoder, trained.head, settings.pooling)
        logits = predict_logits(classifier, inputs, lm.tokenizer.pad_token_id, lm.model.device, settings.batch_size,
                                autocast_for(lm.model.device))
        return [Prediction(id=x.id, gold=None, probs=tuple(p)) for x, p in zip(examples, torch.softmax(logits, -1).tolist())]


class AnswerScores:
    """The classes' answer scores after the template, read off the trained causal LM itself."""

    whole_lm = True

    def prepare(self, lm: Any, shared: Any, template: Template, data: FitData, settings: Any, source: Any,
                progress: bool) -> Prepared:
        import torch

        from harness.models import autocast_for
        from harness.regimes.answer_scores import batch_answers, score_answers

        tokenizer, device = lm.tokenizer, lm.model.device
        inputs = {split: self._encoded(lm, template, examples, settings)
                  for split, examples in (("train", data.train), ("dev", data.dev))}
        labels = {"train": [e.label for e in data.train], "dev": [e.label for e in data.dev]}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        def make_batch(rows: list[int]) -> tuple:
            batch, mask = batch_answers([inputs["train"][i] for i in rows], pad, device, getattr(settings, "pack", False))
            return batch, mask, torch.tensor([labels["train"][i] for i in rows], device=device)

        return Prepared(inputs, labels, make_batch, [sum(len(r) for r in s.rows) for s in inputs["train"]],
                        lambda model: score_answers(model, inputs["dev"], pad, device, settings.batch_size,
                                                    autocast_for(device)),
                        torch.tensor(labels["dev"], device=device))

    @staticmethod
    def _encoded(lm: Any, template: Template, examples: Any, settings: Any) -> list[Any]:
        """Each example's rows that score every answer after its rendered prompt (cut to fit the longest answer)."""
        from harness.regimes.answer_scores import encode_answers

        choices = tuple(answers(template))
        longest = max(len(lm.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices)
        return [encode_answers(lm.tokenizer, text, choices, settings.max_tokens)
                for text in render_within(template, examples, lm.tokenizer, settings.max_tokens, longest,
                                          lm.max_length)]

    def wrap(self, lm: Any, source: Any, module: Any, prepared: Prepared, template: Template, settings: Any,
             classes: int) -> tuple[Any, list[dict[str, Any]]]:
        from harness.errors import HarnessError
        from harness.regimes.answer_scores import AnswerScorer
        from harness.regimes.virtual_tokens import initialise_from_text, template_words

        scorer = AnswerScorer(module).to(lm.model.device)
        if scorer.virtual_tokens and getattr(settings, "pack", False):
            raise HarnessError("--pack: virtual tokens go before every input, so soft prompts train on padded rows")
        if scorer.virtual_tokens and module.active_peft_config.peft_type == "PROMPT_TUNING":
            initialise_from_text(module, lm.tokenizer, template_words(template))
        return scorer, [{"params": [p for p in scorer.modules_trained.parameters() if p.requires_grad]}]

    def predict(self, lm: Any, template: Template, trained: Any, prepared: Prepared, data: FitData, settings: Any,
                progress: bool) -> tuple[list[Prediction], float]:
        import torch

        from harness.models import autocast_for
        from harness.predict import predict_prompting
        from harness.regimes.answer_scores import score_answers

        if trained.virtual_tokens:  # the soft prompt lives in the scorer's forward: the test inputs go through it
            pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
            test = self._encoded(lm, template, data.test, settings)
            scores = score_answers(trained, test, pad, lm.model.device, settings.batch_size,
                                   autocast_for(lm.model.device))
            probs = torch.softmax(scores, -1).tolist()
            tokens = sum(len(r) for s in test for r in s.rows) / len(data.test)
            return ([Prediction(id=x.id, gold=None, probs=tuple(p), scores=tuple(s))
                     for x, p, s in zip(data.test, probs, scores.tolist())], tokens + trained.virtual_tokens)
        run = predict_prompting(trained.modules_trained.eval(), lm.tokenizer, lm.max_length, template, data.test, (),
                                settings.batch_size, progress)
        # scored as zero-shot: one uncached forward over each test prompt
        return run.predictions, sum(p.prompt_tokens for p in run.predictions) / len(data.test)


ANSWER_SCORES = AnswerScores()
