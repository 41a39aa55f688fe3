"""Backbone features, computed once per distinct input and reused across cells (hyperparameters, seeds, k)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.regimes.training import pool


def backbone_of(model: Any) -> nn.Module:
    """The decoder stack of a causal LM (embeddings, blocks, final norm), without the LM head."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def block_parameters(model: Any) -> int:
    """Parameters in the transformer blocks and final norm (what a forward pass multiplies by)."""
    backbone = backbone_of(model)
    embeddings = sum(p.numel() for p in backbone.get_input_embeddings().parameters())
    return sum(p.numel() for p in backbone.parameters()) - embeddings


@contextmanager
def swapped_top(backbone: nn.Module, layers: nn.ModuleList, norm: nn.Module) -> Iterator[None]:
    """Run the backbone's own forward over `layers` and `norm` only (inputs are hidden states, not ids)."""
    saved = backbone.layers, backbone.norm
    backbone.layers, backbone.norm = layers, norm
    try:
        yield
    finally:
        backbone.layers, backbone.norm = saved


class FeatureStore:
    """Per input text: pooled final hidden states, and the hidden states entering the top N blocks."""

    def __init__(self, model: Any, tokenizer: Any, max_tokens: int):
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        self._pooled: dict[tuple[str, str], torch.Tensor] = {}
        self._entering: dict[tuple[str, int], torch.Tensor] = {}
        self.tokens_run = 0  # real tokens forwarded so far (cache misses only)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each input as the classifier sees it (truncated to max_tokens)."""
        return [len(ids) for ids in self._encode(texts)]

    def pooled(self, texts: Sequence[str], pooling: str, batch_size: int, progress: bool = False) -> torch.Tensor:
        """(n, dim) final-norm hidden states pooled per text."""
        self._fill([t for t in dict.fromkeys(texts) if (t, pooling) not in self._pooled], 0, batch_size, progress)
        return torch.stack([self._pooled[(t, pooling)] for t in texts])

    def entering_top(self, texts: Sequence[str], n: int, batch_size: int, progress: bool = False) -> list[torch.Tensor]:
        """Per text, the (tokens, dim) hidden states that enter the top n blocks."""
        self._fill([t for t in dict.fromkeys(texts) if (t, n) not in self._entering], n, batch_size, progress)
        return [self._entering[(t, n)] for t in texts]

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        return [list(ids) for ids in encoded]

    @torch.inference_mode()
    def _fill(self, texts: list[str], top: int, batch_size: int, progress: bool) -> None:
        if not texts:
            return
        encoded = self._encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
        backbone = backbone_of(self.model)
        layers = len(backbone.layers)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        for start in tqdm(range(0, len(order), batch_size), desc="features", disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            ids = torch.tensor([encoded[i] + [pad] * (width - len(encoded[i])) for i in rows], device=device)
            mask = torch.tensor([[1] * len(encoded[i]) + [0] * (width - len(encoded[i])) for i in rows], device=device)
            out = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=top > 0)
            hidden = out.last_hidden_state.float()
            self.tokens_run += int(mask.sum())
            for pooling in ("last", "mean"):
                pooled = pool(hidden, mask, pooling).cpu()
                for j, i in enumerate(rows):
                    self._pooled[(texts[i], pooling)] = pooled[j]
            if top > 0:
                entering = out.hidden_states[layers - top]  # hidden_states[0] = embeddings
                for j, i in enumerate(rows):
                    self._entering[(texts[i], top)] = entering[j, : len(encoded[i])].cpu()
