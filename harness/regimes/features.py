"""Backbone features, computed once per distinct input and reused across cells (hyperparameters, seeds, k)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from harness.backbone import anatomy
from harness.cpu_linear import onednn_linears
from harness.regimes.classifier import pool


class FeatureStore:
    """Per input text and token limit: pooled final hidden states, and the hidden states entering the top N blocks."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        self._pooled: dict[tuple[str, int, str], torch.Tensor] = {}
        self._entering: dict[tuple[str, int, int], torch.Tensor] = {}
        self.tokens_run = 0  # real tokens forwarded so far (cache misses only)

    def token_lengths(self, texts: Sequence[str], max_tokens: int) -> list[int]:
        """Tokens of each input as the classifier sees it (truncated to max_tokens)."""
        return [len(ids) for ids in self._encode(texts, max_tokens)]

    def pooled(self, texts: Sequence[str], pooling: str, max_tokens: int, batch_size: int,
               progress: bool = False) -> torch.Tensor:
        """(n, dim) final-norm hidden states pooled per text."""
        missing = [t for t in dict.fromkeys(texts) if (t, max_tokens, pooling) not in self._pooled]
        self._fill(missing, 0, max_tokens, batch_size, progress)
        return torch.stack([self._pooled[(t, max_tokens, pooling)] for t in texts])

    def entering_top(self, texts: Sequence[str], n: int, max_tokens: int, batch_size: int,
                     progress: bool = False) -> list[torch.Tensor]:
        """Per text, the (tokens, dim) hidden states that enter the top n blocks."""
        missing = [t for t in dict.fromkeys(texts) if (t, max_tokens, n) not in self._entering]
        self._fill(missing, n, max_tokens, batch_size, progress)
        return [self._entering[(t, max_tokens, n)] for t in texts]

    def _encode(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
        return [list(ids) for ids in encoded]

    @torch.inference_mode()
    def _fill(self, texts: list[str], top: int, max_tokens: int, batch_size: int, progress: bool) -> None:
        if not texts:
            return
        encoded = self._encode(texts, max_tokens)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
        parts = anatomy(self.model)
        layers = len(parts.blocks)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        with onednn_linears(self.model):
            for start in tqdm(range(0, len(order), batch_size), desc="features", disable=not progress, leave=False):
                rows = order[start : start + batch_size]
                width = max(len(encoded[i]) for i in rows)
                ids = torch.tensor([encoded[i] + [pad] * (width - len(encoded[i])) for i in rows], device=device)
                mask = torch.tensor([[1] * len(encoded[i]) + [0] * (width - len(encoded[i])) for i in rows],
                                    device=device)
                out = parts.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=top > 0, use_cache=False)
                hidden = out.last_hidden_state.float()
                self.tokens_run += int(mask.sum())
                for pooling in ("last", "mean"):
                    pooled = pool(hidden, mask, pooling).cpu()
                    for j, i in enumerate(rows):
                        self._pooled[(texts[i], max_tokens, pooling)] = pooled[j]
                if top > 0:
                    entering = out.hidden_states[layers - top]  # hidden_states[i] enters block i
                    for j, i in enumerate(rows):
                        self._entering[(texts[i], max_tokens, top)] = entering[j, : len(encoded[i])].cpu()
