"""How `prompt-ft` trains: a copy of the whole LM, cross-entropy over the classes' answer log-likelihoods after
the template (LM-BFF's objective for a causal LM), best dev checkpoint per learning rate; then the copy scores
the test set with the zero-shot scorer."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from harness.cpu_linear import onednn_linears
from harness.prompts import answers
from harness.regimes.budget import Budget
from harness.regimes.prompting import predict_prompting
from harness.regimes.training import FitResult, autocast_for, fit_over_learning_rates, selection_details
from harness.scoring import ScoreRequest, tokenize_requests
from harness.truncation import render_within
from harness.types import FitData, Template


@dataclass
class Scored:
    """One example's rows: token ids per row, and where each class's answer tokens sit (row, first position)."""

    rows: list[list[int]]
    answers: list[tuple[int, int, list[int]]]  # per class: (row in `rows`, position of its first token, tokens)


@dataclass
class AnswerBatch:
    """The rows of several examples, padded, and every class's answer positions and tokens."""

    ids: torch.Tensor  # (rows, width)
    spans: list[list[tuple[int, int, list[int]]]]  # per example, per class: (batch row, first position, tokens)


class AnswerScorer(nn.Module):
    """(batch, mask) -> (examples, classes): each class's summed answer log-likelihood, as zero-shot scores it.

    Only the positions that predict answer tokens go through the LM head (not every position's vocabulary)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.modules_trained = lm  # the whole causal LM, trained
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)  # Gemma applies it to the logits

    def forward(self, batch: AnswerBatch, mask: torch.Tensor) -> torch.Tensor:
        decoder = self.modules_trained.get_decoder()  # any causal LM: no family anatomy needed
        hidden = decoder(input_ids=batch.ids, attention_mask=mask, use_cache=False).last_hidden_state
        rows, positions, targets, owners = [], [], [], []
        for e, spans in enumerate(batch.spans):
            for c, (row, start, tokens) in enumerate(spans):
                for j, token in enumerate(tokens):
                    rows.append(row)
                    positions.append(start + j - 1)  # the position that predicts this token
                    targets.append(token)
                    owners.append((e, c))
        logits = self.modules_trained.get_output_embeddings()(hidden[rows, positions]).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        token_logprobs = torch.log_softmax(logits, -1)[torch.arange(len(targets)), targets]
        classes = len(batch.spans[0])
        flat = torch.tensor([e * classes + c for e, c in owners], device=token_logprobs.device)
        scores = torch.zeros(len(batch.spans) * classes, device=token_logprobs.device, dtype=token_logprobs.dtype)
        return scores.index_add(0, flat, token_logprobs).view(len(batch.spans), classes)


def fit_prompt_ft(lm: Any, template: Template, data: FitData, cfg: Budget, seed: int,
                  progress: bool = False, adapter: Callable[[nn.Module], nn.Module] | None = None) -> FitResult:
    """Train on data.train per learning rate, keep the best dev checkpoint (accuracy, then loss), score the test
    inputs with the zero-shot scorer on the trained copy."""
    model, tokenizer = lm.model, lm.tokenizer
    device = model.device
    choices = tuple(answers(template))
    longest_answer = max(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices)
    encoded = {split: [_scored(tokenizer, text, choices, cfg.max_tokens)
                       for text in render_within(template, examples, tokenizer, cfg.max_tokens, longest_answer)]
               for split, examples in (("train", data.train), ("dev", data.dev))}
    labels = {"train": [e.label for e in data.train], "dev": [e.label for e in data.dev]}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = autocast_for(device)

    def build(lr: float) -> tuple[AnswerScorer, list]:
        copied = copy.deepcopy(model).float()  # fp32 master weights; the base untouched
        for p in copied.parameters():
            p.requires_grad_(True)
        if cfg.gradient_checkpointing and hasattr(copied, "gradient_checkpointing_enable"):
            copied.gradient_checkpointing_enable()
        scorer = AnswerScorer(adapter(copied) if adapter is not None else copied).to(device)
        return scorer, [p for p in scorer.modules_trained.parameters() if p.requires_grad]

    def make_batch(rows: list[int]) -> tuple[AnswerBatch, torch.Tensor, torch.Tensor]:
        batch, mask = _batch([encoded["train"][i] for i in rows], pad, device)
        return batch, mask, torch.tensor([labels["train"][i] for i in rows], device=device)

    result, lr, scorer = fit_over_learning_rates(
        build, make_batch, [sum(len(r) for r in s.rows) for s in encoded["train"]],
        lambda s: _scores(s, encoded["dev"], pad, device, cfg.batch_size, autocast),
        torch.tensor(labels["dev"], device=device), cfg, seed, autocast, progress)
    trained = scorer.modules_trained.eval()
    run = predict_prompting(trained, tokenizer, lm.max_length, template, data.test, (), cfg.batch_size, progress)
    total = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    return FitResult(
        probs=[list(p.probs) for p in run.predictions],
        details=selection_details(result, lr, cfg),
        trainable_parameters=total,
        train_steps=result.steps,
        trained_tokens=result.tokens,
        bytes_per_parameter=next(trained.parameters()).element_size(),
        trained=scorer,
        scored=run.predictions,
    )


def _scored(tokenizer: Any, context: str, choices: Sequence[str], max_tokens: int) -> Scored:
    """The rows that score every answer after `context`, tokenized as the zero-shot scorer does: one row when
    the answers share the context's tokens, else one row per answer."""
    units = tokenize_requests(tokenizer, [ScoreRequest("", context, tuple(choices))], max_tokens)
    rows, spans = [], {}
    for unit in units:
        shared = [*unit.prefix, *unit.context]
        if all(len(c) == 1 for c in unit.continuations):  # every answer read off the context's last position
            rows.append(shared)
            for choice, tokens in zip(unit.choices, unit.continuations):
                spans[choice] = (len(rows) - 1, len(shared), tokens)
            continue
        for choice, tokens in zip(unit.choices, unit.continuations):
            rows.append([*shared, *tokens[:-1]])
            spans[choice] = (len(rows) - 1, len(shared), tokens)
    return Scored(rows, [spans[c] for c in range(len(choices))])


def _batch(examples: Sequence[Scored], pad: int, device: Any) -> tuple[AnswerBatch, torch.Tensor]:
    rows, spans = [], []
    for example in examples:
        offset = len(rows)
        rows.extend(example.rows)
        spans.append([(offset + row, start, tokens) for row, start, tokens in example.answers])
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return AnswerBatch(ids, spans), mask


@torch.no_grad()
def _scores(scorer: AnswerScorer, examples: Sequence[Scored], pad: int, device: Any, batch_size: int,
            autocast: Any) -> torch.Tensor:
    was_training = scorer.training
    scorer.eval()
    out = []
    with onednn_linears(scorer):
        for start in range(0, len(examples), batch_size):
            batch, mask = _batch(examples[start : start + batch_size], pad, device)
            with autocast():
                out.append(scorer(batch, mask).float())
    scorer.train(was_training)
    return torch.cat(out)
