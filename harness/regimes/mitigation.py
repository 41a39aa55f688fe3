"""Forgetting mitigation (`--mitigation`), one penalty added to each training step's loss, its strength chosen
on dev with the learning rate (`--mitigation-strengths`):

- `l2sp` (Li et al. 2018): strength/2 x ||w - w0||^2, the squared distance to where training started;
- `ewc` (Kirkpatrick et al. 2017): strength/2 x sum_i F_i (w_i - w0_i)^2, F the diagonal empirical Fisher of the
  language-model loss on general text at the start weights, scaled to mean 1 (so strengths compare with l2sp's);
- `replay`: strength x the language-model loss on a share of general text (a quarter of the batch's size,
  at least one sequence) at every step.

The general text of ewc and replay is `general_text.article_texts("train", ...)`: the train split of the text
task, disjoint from the test-split text `--forgetting` measures and from every evaluation split.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable

import torch
from torch import nn

from harness.errors import HarnessError
from harness.general_text import article_texts

Penalty = Callable[[], torch.Tensor]
REPLAY_SHARE = 4  # one replayed sequence per this many training examples in a batch
REPLAY_TOKENS = 128  # each general-text sequence cut to this many tokens
FISHER_SEQUENCES = 16  # general-text sequences the Fisher is estimated on


def l2sp_penalty(model: nn.Module, strength: float) -> Penalty:
    """L2-SP: strength/2 x the squared distance of the trained backbone's weights (not a new head) to where
    training started — the pretrained weights, or an adapter's start. Zero at the start."""
    return _weighted_distance(model, strength, None)


def _weighted_distance(model: nn.Module, strength: float, weights: list[torch.Tensor] | None) -> Penalty:
    trained = [p for p in model.modules_trained.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in trained]
    weights = weights or [None] * len(trained)

    def penalty() -> torch.Tensor:
        return strength / 2 * sum((((p - a) ** 2) * (1 if f is None else f)).sum()
                                  for p, a, f in zip(trained, anchors, weights))

    return penalty


def general_text_ids(tokenizer: Any, data_dir: str | None = None) -> list[list[int]]:
    """The general text the mitigations train on, tokenized (each title + body cut to REPLAY_TOKENS)."""
    texts = [title + body for title, body in article_texts("train", data_dir)]
    return [ids for ids in tokenizer(texts, truncation=True, max_length=REPLAY_TOKENS)["input_ids"] if len(ids) > 1]


def lm_loss(module: nn.Module, lm: Any, ids: list[list[int]]) -> torch.Tensor:
    """The next-token loss of the trained module on token-id rows (a decoder copy reads its own tied embeddings
    as the output layer; a whole causal LM its own head)."""
    from harness.regimes.training import pad_rows

    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    whole = base.get_output_embeddings() is not None
    decoder = module.get_decoder() if whole else module
    device = lm.model.device
    batch, mask = pad_rows(ids, lm.tokenizer.pad_token_id or 0, device)
    hidden = decoder(input_ids=batch, attention_mask=mask, use_cache=False).last_hidden_state
    if whole:
        weight = base.get_output_embeddings().weight
    elif getattr(lm.model.config, "tie_word_embeddings", False):
        weight = decoder.get_input_embeddings().weight
    else:
        weight = lm.model.get_output_embeddings().weight
    logits = nn.functional.linear(hidden[:, :-1], weight).float()
    targets = batch[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def diagonal_fisher(model: nn.Module, lm: Any, texts: list[list[int]]) -> list[torch.Tensor]:
    """Per trained parameter: the mean squared gradient of the LM loss over general-text sequences (one at a time),
    scaled so that its mean over every trained weight is 1."""
    trained = [p for p in model.modules_trained.parameters() if p.requires_grad]
    fisher = [torch.zeros_like(p) for p in trained]
    chosen = texts[:FISHER_SEQUENCES]
    for ids in chosen:
        grads = torch.autograd.grad(lm_loss(model.modules_trained, lm, [ids]), trained, allow_unused=True)
        for f, g in zip(fisher, grads):
            if g is not None:
                f += g.detach() ** 2 / len(chosen)
    mean = sum(f.sum() for f in fisher) / sum(f.numel() for f in fisher)
    return [f / mean if mean > 0 else f for f in fisher]


def replay_penalty(model: nn.Module, strength: float, lm: Any, texts: list[list[int]], batch_size: int,
                   seed: int) -> Penalty:
    """strength x the LM loss on the next few general-text sequences, cycling through them in a seeded order."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    stream = itertools.cycle(order)
    share = max(1, batch_size // REPLAY_SHARE)

    def penalty() -> torch.Tensor:
        return strength * lm_loss(model.modules_trained, lm, [texts[next(stream)] for _ in range(share)])

    return penalty


def penalty_maker(settings: Any, lm: Any, source: Any, seed: int) -> Callable[[nn.Module, float], Penalty] | None:
    """(model, strength) -> the step's penalty for the settings' mitigation; None without one."""
    if getattr(settings, "mitigation", "none") == "none":
        return None
    if settings.mitigation == "l2sp":
        return l2sp_penalty
    if getattr(source, "reads_features", False):
        raise HarnessError(f"--mitigation {settings.mitigation}: head --unfreeze-top trains on cached hidden states, "
                           "which general text does not have; use --mitigation l2sp")
    texts = general_text_ids(lm.tokenizer)
    if settings.mitigation == "replay":
        return lambda model, strength: replay_penalty(model, strength, lm, texts, settings.batch_size, seed)
    fisher: list[list[torch.Tensor]] = []  # every run starts from the same weights (the cell's seed): one Fisher

    def ewc(model: nn.Module, strength: float) -> Penalty:
        if not fisher:
            fisher.append(diagonal_fisher(model, lm, texts))
        return _weighted_distance(model, strength, fisher[0])

    return ewc
