"""Log-likelihood of answer strings after a prompt, with the shortcuts that keep it cheap.

A request is (prefix, context, continuations). The prefix is the part shared by many requests (few-shot
demos): it is encoded once and its key/value cache reused. Each context is encoded once for all its
continuations; continuations of one token are read off that same pass, longer ones run on its cache.
`score_naive` runs one full forward per (request, continuation) and is the reference the tests hold
the shortcuts to.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from harness.errors import HarnessError


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Score each continuation after prefix + context (the strings are concatenated as written)."""

    prefix: str
    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Summed log-probabilities of each continuation's tokens, and tokens cut from the left to fit."""

    logliks: tuple[float, ...]
    truncated_tokens: int


@dataclass
class ScoreStats:
    """What the model actually ran: real (non-pad) tokens and forward calls."""

    tokens: int = 0
    forwards: int = 0


@dataclass
class _Unit:
    """Token ids of one request (or one of its continuations, when they do not share a context)."""

    request: int
    choices: list[int]
    prefix: tuple[int, ...]
    context: list[int]
    continuations: list[list[int]]
    truncated: int = 0
    scores: dict[int, float] = field(default_factory=dict)


def score_requests(
    model: Any, tokenizer: Any, requests: Sequence[ScoreRequest], batch_size: int, max_length: int,
    stats: ScoreStats | None = None, progress: bool = False,
) -> list[ScoreResult]:
    """Score every request: shared prefixes once, length-sorted batches, results in input order."""
    stats = stats if stats is not None else ScoreStats()
    units = tokenize_requests(tokenizer, requests, max_length)
    groups: dict[tuple[int, ...], list[_Unit]] = {}
    for unit in units:
        groups.setdefault(unit.prefix, []).append(unit)
    bar = tqdm(total=len(units), desc="scoring", unit="prompt", disable=not progress, leave=False)
    with torch.inference_mode():
        for prefix, members in groups.items():
            prefix_cache = _encode_prefix(model, prefix, stats)
            members.sort(key=lambda u: len(u.context), reverse=True)
            for start in range(0, len(members), batch_size):
                batch = members[start : start + batch_size]
                _score_batch(model, tokenizer, len(prefix), prefix_cache, batch, batch_size, stats)
                bar.update(len(batch))
    bar.close()
    return _collect(requests, units)


def score_naive(model: Any, tokenizer: Any, requests: Sequence[ScoreRequest], max_length: int,
                stats: ScoreStats | None = None) -> list[ScoreResult]:
    """Reference: one full forward per (request, continuation), no padding, no cache."""
    stats = stats if stats is not None else ScoreStats()
    units = tokenize_requests(tokenizer, requests, max_length)
    with torch.inference_mode():
        for unit in units:
            for choice, cont in zip(unit.choices, unit.continuations):
                ids = [*unit.prefix, *unit.context, *cont]
                logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
                logp = torch.log_softmax(logits[-len(cont) - 1 : -1], dim=-1)
                unit.scores[choice] = float(logp.gather(1, torch.tensor(cont, device=logp.device)[:, None]).sum())
                stats.tokens += len(ids)
                stats.forwards += 1
    return _collect(requests, units)


def tokenize_requests(tokenizer: Any, requests: Sequence[ScoreRequest], max_length: int) -> list[_Unit]:
    """Tokenize each prefix+context+continuation as one string, then split the ids at the character bounds."""
    leading = _leading_special_ids(tokenizer)
    texts = [r.prefix + r.context + c for r in requests for c in r.continuations]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    units: list[_Unit] = []
    row = 0
    for index, request in enumerate(requests):
        split = []
        for _ in request.continuations:
            ids, offsets = encoded["input_ids"][row], encoded["offset_mapping"][row]
            row += 1
            prefix_end = _first_token_ending_after(offsets, len(request.prefix))
            context_end = _first_token_ending_after(offsets, len(request.prefix) + len(request.context))
            split.append(([*leading, *ids[:prefix_end]], ids[prefix_end:context_end], ids[context_end:]))
        choices = list(range(len(request.continuations)))
        if all(s[:2] == split[0][:2] for s in split):
            units.append(_make_unit(index, choices, split[0][0], split[0][1], [s[2] for s in split], max_length))
        else:  # the answer merged into the prompt's last token differently per choice: score each alone
            units.extend(_make_unit(index, [c], s[0], s[1], [s[2]], max_length) for c, s in zip(choices, split))
    return units


def _make_unit(request: int, choices: list[int], prefix: list[int], context: list[int],
               continuations: list[list[int]], max_length: int) -> _Unit:
    if any(not c for c in continuations):
        raise HarnessError(f"request {request}: an answer tokenizes to nothing; check the template's verbalizers")
    longest = max(len(c) for c in continuations)
    excess = len(prefix) + len(context) + longest - max_length
    truncated = 0
    if excess > 0:  # no room for a shared prefix: fold it in and cut the oldest tokens
        context, prefix = [*prefix, *context][excess:], []
        truncated = excess
        if not context:
            raise HarnessError(f"request {request}: the answers alone exceed the model's {max_length} tokens")
    if not context:  # the first answer token needs a position before it to be predicted from
        if not prefix:
            raise HarnessError(f"request {request}: the prompt is empty and the tokenizer adds no BOS token")
        context, prefix = [prefix[-1]], prefix[:-1]
    return _Unit(request, choices, tuple(prefix), list(context), continuations, truncated)


def _leading_special_ids(tokenizer: Any) -> list[int]:
    """Special tokens the tokenizer puts before any text (a BOS, say); trailing ones (EOS) are not wanted."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def _first_token_ending_after(offsets: Sequence[tuple[int, int]], bound: int) -> int:
    for i, (_, end) in enumerate(offsets):
        if end > bound:
            return i
    return len(offsets)


def _cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """transformers renamed `past_key_values` to `cache` in 5.2x; pass whichever this version takes."""
    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def _returned_cache(out: Any) -> Any:
    return out["cache"] if "cache" in out.keys() else out["past_key_values"]


def _encode_prefix(model: Any, prefix: tuple[int, ...], stats: ScoreStats) -> Any:
    if not prefix:
        return None
    out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True, logits_to_keep=1)
    stats.tokens += len(prefix)
    stats.forwards += 1
    return _returned_cache(out)


def _select_cache(model: Any, cache: Any, rows: list[int]) -> Any:
    """A new cache holding the given batch rows of `cache` (rows may repeat); `cache` stays intact."""
    from transformers import DynamicCache

    index = torch.tensor(rows, device=model.device)
    data = [(layer.keys.index_select(0, index), layer.values.index_select(0, index)) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=data, config=model.config)


def _score_batch(model: Any, tokenizer: Any, prefix_len: int, prefix_cache: Any, batch: list[_Unit],
                 batch_size: int, stats: ScoreStats) -> None:
    device, pad = model.device, tokenizer.pad_token_id
    lengths = [len(u.context) for u in batch]
    width = max(lengths)
    ids = torch.tensor([u.context + [pad] * (width - len(u.context)) for u in batch], device=device)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=device)
    multi = any(len(c) > 1 for u in batch for c in u.continuations)
    past = _select_cache(model, prefix_cache, [0] * len(batch)) if prefix_cache is not None else None
    last = torch.tensor(lengths, device=device) - 1
    keep = torch.unique(last)  # compute logits only where a first answer token is predicted
    out = model(
        input_ids=ids,
        attention_mask=torch.cat([torch.ones(len(batch), prefix_len, dtype=mask.dtype, device=device), mask], 1),
        position_ids=(prefix_len + torch.arange(width, device=device)).expand(len(batch), -1),
        **_cache_kwargs(model, past), use_cache=multi, logits_to_keep=keep,
    )
    stats.tokens += sum(lengths)
    stats.forwards += 1
    first = torch.log_softmax(out.logits[torch.arange(len(batch)), torch.searchsorted(keep, last)].float(), -1)
    for b, unit in enumerate(batch):
        for choice, cont in zip(unit.choices, unit.continuations):
            unit.scores[choice] = float(first[b, cont[0]])
    if multi:
        rows = [(b, j) for b, u in enumerate(batch) for j, c in enumerate(u.continuations) if len(c) > 1]
        for start in range(0, len(rows), batch_size):
            _score_rest(model, pad, prefix_len, _returned_cache(out), mask, batch, rows[start : start + batch_size], stats)


def _score_rest(model: Any, pad: int, prefix_len: int, cache: Any, context_mask: torch.Tensor,
                batch: list[_Unit], rows: list[tuple[int, int]], stats: ScoreStats) -> None:
    """Tokens 2.. of each answer, run on a copy of the context cache (rows = (unit, continuation))."""
    device = model.device
    tails = [batch[b].continuations[j][:-1] for b, j in rows]  # the last token is only predicted
    width = max(len(t) for t in tails)
    ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
    mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in tails], device=device)
    units = [b for b, _ in rows]
    starts = torch.tensor([prefix_len + len(batch[b].context) for b in units], device=device)
    logits = model(
        input_ids=ids,
        attention_mask=torch.cat(
            [torch.ones(len(rows), prefix_len, dtype=mask.dtype, device=device), context_mask[units], mask], 1),
        position_ids=starts[:, None] + torch.arange(width, device=device),
        **_cache_kwargs(model, _select_cache(model, cache, units)), use_cache=True,
    ).logits.float()
    stats.tokens += sum(len(t) for t in tails)
    stats.forwards += 1
    logp = torch.log_softmax(logits, -1)
    for r, (b, j) in enumerate(rows):
        unit, cont = batch[b], batch[b].continuations[j]
        targets = torch.tensor(cont[1:], device=device)
        unit.scores[unit.choices[j]] += float(logp[r, : len(cont) - 1].gather(1, targets[:, None]).sum())


def _collect(requests: Sequence[ScoreRequest], units: list[_Unit]) -> list[ScoreResult]:
    scores: list[dict[int, float]] = [{} for _ in requests]
    truncated = [0] * len(requests)
    for unit in units:
        scores[unit.request].update(unit.scores)
        truncated[unit.request] = max(truncated[unit.request], unit.truncated)
    return [
        ScoreResult(tuple(s[c] for c in range(len(r.continuations))), t)
        for r, s, t in zip(requests, scores, truncated)
    ]
