"""The classes' answer scores after the template, as a trainable module: prompt-ft's objective (LM-BFF's, for a
causal LM). Each class's summed answer log-likelihood, exactly what zero-shot compares (torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from harness.cpu_linear import onednn_linears
from harness.regimes.training import PackedRows, pack_rows, pad_rows
from harness.scoring import ScoreRequest, tokenize_requests


@dataclass
class Scored:
    """One example's rows: token ids per row, and where each class's answer tokens sit (row, first position)."""

    rows: list[list[int]]
    answers: list[tuple[int, int, list[int]]]  # per class: (row in `rows`, position of its first token, tokens)


@dataclass
class AnswerBatch:
    """The rows of several examples, padded, and every class's answer positions and tokens."""

    ids: torch.Tensor | PackedRows  # (rows, width) padded, or every row packed into one (row 0)
    spans: list[list[tuple[int, int, list[int]]]]  # per example, per class: (batch row, first position, tokens)


class AnswerScorer(nn.Module):
    """(batch, mask) -> (examples, classes): each class's summed answer log-likelihood, as zero-shot scores it.

    Only the positions that predict answer tokens go through the LM head (not every position's vocabulary)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.modules_trained = lm  # the whole causal LM, trained
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)  # Gemma applies it to the logits
        config = getattr(lm, "active_peft_config", None)  # peft prompt learning: virtual tokens before every row
        self.virtual_tokens = config.num_virtual_tokens if getattr(config, "is_prompt_learning", False) else 0

    def _after_virtual_tokens(self, decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The real tokens' hidden states with the soft prompt before them: n input embeddings (prompt tuning),
        or n keys and values in every layer (prefix tuning)."""
        lm, n = self.modules_trained, self.virtual_tokens
        prompt = lm.get_prompt(batch_size=ids.shape[0])
        mask = torch.cat([mask.new_ones(ids.shape[0], n), mask], 1)
        if isinstance(prompt, torch.Tensor):  # (batch, n, dim) embeddings
            embeds = lm.get_input_embeddings()(ids)
            hidden = decoder(inputs_embeds=torch.cat([prompt.to(embeds.dtype), embeds], 1), attention_mask=mask,
                             use_cache=False).last_hidden_state
            return hidden[:, n:]
        return decoder(input_ids=ids, attention_mask=mask, past_key_values=prompt, use_cache=True).last_hidden_state

    def forward(self, batch: AnswerBatch, mask: torch.Tensor) -> torch.Tensor:
        decoder = self.modules_trained.get_decoder()  # any causal LM: no family anatomy needed
        if isinstance(batch.ids, PackedRows):  # one row, a block-diagonal mask, positions restarting per input
            hidden = decoder(input_ids=batch.ids.ids, attention_mask=batch.ids.mask,
                             position_ids=batch.ids.positions, use_cache=False).last_hidden_state
        elif self.virtual_tokens:
            hidden = self._after_virtual_tokens(decoder, batch.ids, mask)
        else:
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


def encode_answers(tokenizer: Any, context: str, choices: Sequence[str], max_tokens: int) -> Scored:
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


def batch_answers(examples: Sequence[Scored], pad: int, device: Any,
                  pack: bool = False) -> tuple[AnswerBatch, torch.Tensor]:
    """Several examples' rows, padded (or packed into one row: each answer's position moves by its row's start)."""
    rows, spans = [], []
    for example in examples:
        offset = len(rows)
        rows.extend(example.rows)
        spans.append([(offset + row, start, tokens) for row, start, tokens in example.answers])
    if not pack:
        ids, mask = pad_rows(rows, pad, device)
        return AnswerBatch(ids, spans), mask
    packed, mask = pack_rows(rows, device)
    starts = packed.starts.tolist()
    return AnswerBatch(packed, [[(0, starts[row] + start, tokens) for row, start, tokens in s] for s in spans]), mask


@torch.no_grad()
def score_answers(scorer: AnswerScorer, examples: Sequence[Scored], pad: int, device: Any, batch_size: int,
            autocast: Any) -> torch.Tensor:
    was_training = scorer.training
    scorer.eval()
    out = []
    with onednn_linears(scorer):
        for start in range(0, len(examples), batch_size):
            batch, mask = batch_answers(examples[start : start + batch_size], pad, device)
            with autocast():
                out.append(scorer(batch, mask).float())
    scorer.train(was_training)
    return torch.cat(out)
