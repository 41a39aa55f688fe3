"""Model anatomy per family: where a causal LM keeps its embeddings, blocks and final norm.

`head` and `full` train on the decoder stack without the LM head; `head --unfreeze-top N` runs the decoder's
own forward over its top N blocks only, fed the cached hidden states that enter them. Each family names its
parts differently, so they are looked up here, by the config's `model_type`. Prompting needs none of this.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from harness.errors import HarnessError


@dataclass(frozen=True)
class Family:
    """Attribute names inside a family's decoder module (what `model.get_decoder()` returns)."""

    blocks: str  # the ModuleList of transformer blocks
    final_norm: str
    embeddings: str  # token embeddings
    position_embeddings: str | None = None  # learned absolute positions, added to inputs_embeds in forward


# model_type -> anatomy. Each entry is tested on a tiny random config of its family (tests/test_backbone.py).
FAMILIES: dict[str, Family] = {
    "llama": Family(blocks="layers", final_norm="norm", embeddings="embed_tokens"),  # SmolLM2
    "gemma3_text": Family(blocks="layers", final_norm="norm", embeddings="embed_tokens"),  # Gemma 3 (text-only)
    "gpt_neox": Family(blocks="layers", final_norm="final_layer_norm", embeddings="embed_in"),
    "gpt2": Family(blocks="h", final_norm="ln_f", embeddings="wte", position_embeddings="wpe"),
}


@dataclass(frozen=True)
class Anatomy:
    """One model's decoder stack and its parts."""

    family: str
    decoder: Any  # nn.Module: embeddings -> blocks -> final norm, called with input_ids or inputs_embeds
    names: Family
    hidden_size: int

    @property
    def blocks(self) -> Any:
        return getattr(self.decoder, self.names.blocks)

    @property
    def final_norm(self) -> Any:
        return getattr(self.decoder, self.names.final_norm)


def family_of(model: Any) -> str:
    return str(getattr(model.config, "model_type", "unknown"))


def anatomy(model: Any) -> Anatomy:
    """The decoder stack of a causal LM of a known family; any other family is one clear error."""
    family = family_of(model)
    names = FAMILIES.get(family)
    if names is None:
        raise HarnessError(f"model family '{family}' is not supported by head/full (known: "
                           f"{', '.join(sorted(FAMILIES))}); prompting regimes work with any causal LM")
    decoder = model.get_decoder()
    return Anatomy(family=family, decoder=decoder, names=names, hidden_size=int(model.config.hidden_size))


def block_parameters(model: Any) -> int:
    """Parameters in the transformer blocks and final norm: what a forward pass multiplies each token by."""
    if family_of(model) in FAMILIES:
        parts = anatomy(model)
        return _count(parts.blocks) + _count(parts.final_norm)
    # any other causal LM (prompting): everything but the input embeddings and an untied output layer
    total = _count(model)
    embeddings = model.get_input_embeddings()
    output = model.get_output_embeddings()
    untied = output is not None and output.weight is not embeddings.weight
    return total - _count(embeddings) - (_count(output) if untied else 0)


def decoder_parameters(model: Any) -> int:
    """Parameters of the decoder stack (embeddings, blocks, final norm), without the LM head."""
    return _count(anatomy(model).decoder)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


@contextmanager
def top_blocks_only(parts: Anatomy, blocks: Any, final_norm: Any) -> Iterator[None]:
    """Let the decoder's own forward run `blocks` and `final_norm` only, on inputs_embeds that are hidden states.

    Learned position embeddings (GPT-2) were already added to those hidden states, so they are zeroed here;
    per-block settings listed in the config (Gemma 3's layer_types) are cut to the same top blocks.
    """
    swaps = {parts.names.blocks: blocks, parts.names.final_norm: final_norm}
    if parts.names.position_embeddings:
        swaps[parts.names.position_embeddings] = _no_positions(parts.hidden_size)
    saved = {name: getattr(parts.decoder, name) for name in swaps}
    config = parts.decoder.config
    # Gemma 3 picks each block's attention (sliding or global) as config.layer_types[position in the loop]
    layer_types = getattr(config, "layer_types", None)
    for name, module in swaps.items():
        setattr(parts.decoder, name, module)
    if layer_types is not None:
        config.layer_types = list(layer_types)[len(layer_types) - len(blocks):]
    try:
        yield
    finally:
        for name, module in saved.items():
            setattr(parts.decoder, name, module)
        if layer_types is not None:
            config.layer_types = layer_types


@contextmanager
def top_swapped(model: Any, layers: Any, norm: Any) -> Iterator[None]:
    """The model with its top len(layers) blocks and its final norm replaced by trained ones, then put back:
    `head --unfreeze-top N` as a user would deploy it."""
    from torch import nn

    parts = anatomy(model)
    blocks, own_norm = parts.blocks, parts.final_norm
    setattr(parts.decoder, parts.names.blocks, nn.ModuleList([*list(blocks)[: len(blocks) - len(layers)], *layers]))
    setattr(parts.decoder, parts.names.final_norm, norm)
    try:
        yield
    finally:
        setattr(parts.decoder, parts.names.blocks, blocks)
        setattr(parts.decoder, parts.names.final_norm, own_norm)


@contextmanager
def decoder_swapped(model: Any, decoder: Any) -> Iterator[None]:
    """The model with a trained decoder in place of its own, then put back; an output layer tied to the input
    embeddings follows the trained embeddings meanwhile."""
    own = getattr(model, model.base_model_prefix)
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is own.get_input_embeddings().weight
    own_weight = output.weight if output is not None else None
    setattr(model, model.base_model_prefix, decoder)
    if tied:
        output.weight = decoder.get_input_embeddings().weight
    try:
        yield
    finally:
        setattr(model, model.base_model_prefix, own)
        if tied:
            output.weight = own_weight


@lru_cache(maxsize=8)
def _no_positions(hidden_size: int) -> Any:
    """A position embedding that adds nothing: (..., positions) -> zeros (..., positions, hidden_size).

    Made once per width (this runs at every training step), and here rather than at import: importing this
    module must not import torch (the leaderboard reads the registry).
    """
    import torch
    from torch import nn

    class NoPositions(nn.Module):
        def forward(self, positions: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*positions.shape, hidden_size, device=positions.device)

    return NoPositions()
