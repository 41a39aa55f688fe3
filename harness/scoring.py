"""Log-likelihood of answer strings after a prompt, with the shortcuts that keep it cheap.

A request is (prefix, context, continuations). The prefix is the part shared by many requests (few-shot
demos): it is encoded once and its key/value cache reused. A batch of requests is packed into one row
after the prefix, each context once with all its continuations, so answers of one token are read off
the context's last position and longer ones cost only their own tokens; nothing is padded.
`score_naive` runs one full forward per (request, continuation) and is the reference the tests hold
the shortcuts to.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from harness.cpu_linear import onednn_linears
from harness.errors import HarnessError

# A packed row's mask (and each head's attention scores) has packed x (prefix + packed) entries: 2**24 keeps a
# pack's mask at 64 MiB in fp32, where 16 unshared 8k-token prompts in one row would ask for 17 GB.
PACK_ATTENTION_ELEMENTS = 2**24
# A packed row's attention runs with a dense additive mask (no fused causal kernel): measured on 2 CPU cores with
# SmolLM2 (200 sst2 prompts, batch 16), padded rows took 0.86-0.92x the packed time where FLOPs alone favour
# packing slightly; this factor on the packed attention term makes the work model agree (bench/RESULTS.md).
PACKED_ATTENTION_COST = 3.0


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
    prompt_tokens: int = 0  # prefix + context tokens (what an uncached forward would run before the answer)


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
    sliding = _has_sliding_window(model)
    if sliding:  # every prompt whole in its own row: see _has_sliding_window
        for unit in units:
            unit.context, unit.prefix = [*unit.prefix, *unit.context], ()
    groups: dict[tuple[int, ...], list[_Unit]] = {}
    for unit in units:
        groups.setdefault(unit.prefix, []).append(unit)
    bar = tqdm(total=len(units), desc="scoring", unit="prompt", disable=not progress, leave=False)
    attention = _attention_weight(model)
    with torch.inference_mode(), onednn_linears(model):
        for prefix, members in groups.items():
            prefix_cache = _encode_prefix(model, prefix, stats)
            members.sort(key=lambda u: (_fits_a_row(u), len(u.context)), reverse=True)
            for batch in _packs(members, len(prefix), batch_size):  # units that fit a padded row batched apart
                if sliding and not _can_pad(model, batch):
                    for unit in batch:
                        _score_unit_naive(model, unit, stats)
                elif sliding or _padded_is_cheaper(model, len(prefix), batch, attention):
                    _score_padded(model, batch, stats)
                else:
                    _score_pack(model, len(prefix), prefix_cache, batch, stats)
                bar.update(len(batch))
    bar.close()
    return _collect(requests, units)


def _packs(units: list[_Unit], prefix_len: int, batch_size: int) -> Iterator[list[_Unit]]:
    """Consecutive units, at most batch_size per pack and at most PACK_ATTENTION_ELEMENTS in its attention
    mask (packed tokens x (prefix + packed tokens)); a unit too long for that goes alone. Units that fit one padded
    row (_fits_a_row) never share a pack with others."""
    batch: list[_Unit] = []
    packed = 0
    for unit in units:
        size = len(unit.context) + sum(len(c) - 1 for c in unit.continuations)
        grown = packed + size
        kind_changes = batch and _fits_a_row(batch[-1]) != _fits_a_row(unit)
        if batch and (len(batch) == batch_size or kind_changes or grown * (prefix_len + grown) > PACK_ATTENTION_ELEMENTS):
            yield batch
            batch, grown = [], size
        batch.append(unit)
        packed = grown
    if batch:
        yield batch


def score_naive(model: Any, tokenizer: Any, requests: Sequence[ScoreRequest], max_length: int,
                stats: ScoreStats | None = None) -> list[ScoreResult]:
    """Reference: one full forward per (request, continuation), no padding, no cache."""
    stats = stats if stats is not None else ScoreStats()
    units = tokenize_requests(tokenizer, requests, max_length)
    with torch.inference_mode():
        for unit in units:
            _score_unit_naive(model, unit, stats)
    return _collect(requests, units)


def _score_unit_naive(model: Any, unit: _Unit, stats: ScoreStats) -> None:
    for choice, cont in zip(unit.choices, unit.continuations):
        ids = [*unit.prefix, *unit.context, *cont]
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
        logp = torch.log_softmax(logits[-len(cont) - 1 : -1], dim=-1)
        unit.scores[choice] = float(logp.gather(1, torch.tensor(cont, device=logp.device)[:, None]).sum())
        stats.tokens += len(ids)
        stats.forwards += 1


def _has_sliding_window(model: Any) -> bool:
    """Whether some layers attend within a sliding window (Gemma 3's local layers, Mistral). A shared prefix's
    cache cannot be cut back once the window is full, and a packed row's own mask would bypass the window, so such
    a model scores each prompt whole in its own row under its own masks: right-padded rows where _can_pad, else one
    forward per answer."""
    config = model.config
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        return True
    return bool(getattr(config, "sliding_window", None)) and getattr(config, "use_sliding_window", True) is not False


def tokenize_requests(tokenizer: Any, requests: Sequence[ScoreRequest], max_length: int) -> list[_Unit]:
    """Tokenize each prefix+context+continuation as one string, then split the ids at the character bounds."""
    leading = leading_special_ids(tokenizer)
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


def leading_special_ids(tokenizer: Any) -> list[int]:
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


def _fits_a_row(unit: _Unit) -> bool:
    """Whether a unit fits one padded row: its answers are one token each, or it has one answer (a row then
    holds the context and that answer but its last token)."""
    return all(len(c) == 1 for c in unit.continuations) or len(unit.continuations) == 1


def _row(unit: _Unit) -> list[int]:
    return unit.context + (unit.continuations[0][:-1] if len(unit.continuations) == 1 else [])


def _can_pad(model: Any, batch: list[_Unit]) -> bool:
    """Whether right-padded rows can score the batch: every unit fits a row, and the model's family is known (its
    decoder and output layer are called apart)."""
    from harness.backbone import FAMILIES, family_of

    return family_of(model) in FAMILIES and all(_fits_a_row(u) for u in batch)


def _attention_weight(model: Any) -> float:
    """The work of one (query, key) pair of attention relative to one token through the weights:
    4 · hidden · layers FLOPs against 2 · N."""
    from harness.backbone import block_parameters

    config = model.config
    hidden, layers = getattr(config, "hidden_size", 0), getattr(config, "num_hidden_layers", 0)
    return 2 * hidden * layers / max(1, block_parameters(model))


def _padded_is_cheaper(model: Any, prefix_len: int, batch: list[_Unit], attention: float) -> bool:
    """Whether one right-padded row per prompt costs less than one packed row, by the work each does.

    Packing runs no padding but every packed token attends over the whole row (masked afterwards, through a
    dense mask): T tokens cost T · (1 + c · a · (P + T / 2)). Padded rows run B · W tokens, each attending within
    its own row only, causal: B · W · (1 + a · W / 2) (a: attention_weight, c: PACKED_ATTENTION_COST). Padding
    is used for prompts without a shared prefix whose answers are one token each, or that have one answer (a
    held-out text's body), on a model whose output layer is known."""
    if prefix_len or not _can_pad(model, batch):
        return False
    width = max(len(_row(u)) for u in batch)
    if len(batch) * width * width > PACK_ATTENTION_ELEMENTS:
        return False
    total = sum(len(_row(u)) for u in batch)
    packed = total * (1 + PACKED_ATTENTION_COST * attention * total / 2)
    return len(batch) * width * (1 + attention * width / 2) < packed


def _score_padded(model: Any, batch: list[_Unit], stats: ScoreStats) -> None:
    """One row per prompt, right-padded (a causal model never looks at the padding after a token, so no mask is
    needed): one-token answers read off the prompt's last position, a single longer answer off its own positions,
    through the output layer at those positions alone."""
    device = model.device
    rows = [_row(u) for u in batch]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows], device=device)
    reads = []  # (unit, choice, row, position, target)
    for i, unit in enumerate(batch):
        last = len(unit.context) - 1
        for choice, cont in zip(unit.choices, unit.continuations):
            unit.scores[choice] = 0.0
            reads += [(unit, choice, i, last + t, target) for t, target in enumerate(cont)]
    decoder = model.get_decoder()
    hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
    at_rows = torch.tensor([r[2] for r in reads], device=device)
    at_positions = torch.tensor([r[3] for r in reads], device=device)
    logp = torch.log_softmax(_output_logits(model, hidden[at_rows, at_positions]), dim=-1)
    values = logp[torch.arange(len(reads), device=device), torch.tensor([r[4] for r in reads], device=device)]
    stats.tokens += sum(len(r) for r in rows)
    stats.forwards += 1
    for (unit, choice, _, _, _), value in zip(reads, values.tolist()):
        unit.scores[choice] += value


def _score_pack(model: Any, prefix_len: int, prefix_cache: Any, batch: list[_Unit], stats: ScoreStats) -> None:
    """One forward over the batch packed into a single row after the shared prefix.

    Row layout: for each unit its context, then each continuation minus its last token (a "tail").
    A context token sees the prefix and its own context; a tail token sees the prefix, its unit's
    context and its own tail. Positions restart after the prefix for every unit, so each token is
    computed exactly as in a full forward of prefix + context + continuation; nothing is padded.
    """
    device = model.device
    ids: list[int] = []
    unit_of: list[int] = []  # per packed token: which unit
    segment_of: list[int] = []  # per packed token: 0 for context, j + 1 for tail j
    positions: list[int] = []
    reads: list[tuple[_Unit, int, int, int]] = []  # (unit, choice, packed index of the predictor, target id)
    for u, unit in enumerate(batch):
        base = len(ids)
        ids += unit.context
        unit_of += [u] * len(unit.context)
        segment_of += [0] * len(unit.context)
        positions += range(prefix_len, prefix_len + len(unit.context))
        last = base + len(unit.context) - 1
        for j, (choice, cont) in enumerate(zip(unit.choices, unit.continuations)):
            unit.scores[choice] = 0.0
            reads.append((unit, choice, last, cont[0]))
            tail_start = len(ids)
            tail = cont[:-1]
            ids += tail
            unit_of += [u] * len(tail)
            segment_of += [j + 1] * len(tail)
            positions += range(prefix_len + len(unit.context), prefix_len + len(unit.context) + len(tail))
            reads.extend((unit, choice, tail_start + t, cont[t + 1]) for t in range(len(tail)))
    keep = sorted({r[2] for r in reads})
    column = {index: i for i, index in enumerate(keep)}
    inputs = dict(input_ids=torch.tensor([ids], device=device),
                  attention_mask=_pack_mask(unit_of, segment_of, prefix_len, model.dtype, device),
                  position_ids=torch.tensor([positions], device=device), use_cache=prefix_cache is not None)
    if _fp32_head(model):
        decoder = model.get_decoder()
        hidden = decoder(**inputs, **_cache_kwargs(decoder, prefix_cache)).last_hidden_state
        logits = _output_logits(model, hidden[0, keep])
    else:
        out = model(**inputs, **_cache_kwargs(model, prefix_cache), logits_to_keep=torch.tensor(keep, device=device))
        logits = out.logits[0].float()
    if prefix_cache is not None:
        prefix_cache.crop(-len(ids))  # drop this pack's keys/values: the prefix serves the next pack
    stats.tokens += len(ids)
    stats.forwards += 1
    logp = torch.log_softmax(logits, dim=-1)
    rows = torch.tensor([column[r[2]] for r in reads], device=device)
    targets = torch.tensor([r[3] for r in reads], device=device)
    values = logp[rows, targets].tolist()
    for (unit, choice, _, _), value in zip(reads, values):
        unit.scores[choice] += value


def _fp32_head(model: Any) -> bool:
    """Whether the answer logits are computed in fp32 from the decoder's last hidden states: for a model in a
    16-bit dtype of a family whose output layer is known to be a plain linear map (plus Gemma's soft cap).
    bf16 logits round the answers' log-likelihoods so coarsely that 0.25–4.7 % of prompts tied exactly."""
    from harness.backbone import FAMILIES, family_of

    return model.dtype in (torch.bfloat16, torch.float16) and family_of(model) in FAMILIES


def _output_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 logits of chosen hidden states through the output layer (in fp32 when the model is 16-bit)."""
    head = model.get_output_embeddings()
    weight, bias = head.weight, getattr(head, "bias", None)
    if _fp32_head(model):
        hidden, weight, bias = hidden.float(), weight.float(), bias.float() if bias is not None else None
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _pack_mask(unit_of: list[int], segment_of: list[int], prefix_len: int, dtype: Any, device: Any) -> torch.Tensor:
    """Additive mask (1, 1, packed, prefix + packed): 0 where a token may look, the dtype's minimum elsewhere."""
    unit = torch.tensor(unit_of, device=device)
    segment = torch.tensor(segment_of, device=device)
    n = len(unit_of)
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    same_unit = unit[:, None] == unit[None, :]
    visible = causal & same_unit & ((segment[None, :] == 0) | (segment[:, None] == segment[None, :]))
    allowed = torch.cat([torch.ones(n, prefix_len, dtype=torch.bool, device=device), visible], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _collect(requests: Sequence[ScoreRequest], units: list[_Unit]) -> list[ScoreResult]:
    scores: list[dict[int, float]] = [{} for _ in requests]
    truncated = [0] * len(requests)
    prompt = [0] * len(requests)
    for unit in units:
        scores[unit.request].update(unit.scores)
        truncated[unit.request] = max(truncated[unit.request], unit.truncated)
        prompt[unit.request] = max(prompt[unit.request], len(unit.prefix) + len(unit.context))
    return [
        ScoreResult(tuple(s[c] for c in range(len(r.continuations))), t, p)
        for r, s, t, p in zip(requests, scores, truncated, prompt)
    ]
