"""A new classification head on a transformer stack: pooling, the classifier module, its starting weights, and its
predictions (torch)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from harness.cpu_linear import onednn_linears
from harness.regimes.training import PackedRows, pad_rows


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(batch, seq, dim) hidden states -> (batch, dim): last non-pad token (right padding) or masked mean."""
    if how == "last":
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class SequenceClassifier(nn.Module):
    """A transformer stack (the whole backbone, or its top blocks run on cached inputs) plus a linear head."""

    def __init__(self, body: Callable[..., torch.Tensor], modules: nn.Module, head: nn.Linear, pooling: str):
        super().__init__()
        self.modules_trained = modules
        self.body = body  # (inputs, mask) -> (batch, seq, dim) final-norm hidden states
        self.head = head
        self.pooling = pooling

    def forward(self, inputs: torch.Tensor | PackedRows, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(inputs, mask)
        if isinstance(inputs, PackedRows):  # (1, tokens, dim): each input's last token, or its mean
            if self.pooling == "last":
                pooled = hidden[0, inputs.ends]
            else:
                pooled = torch.stack([hidden[0, a : b + 1].mean(0) for a, b in zip(inputs.starts.tolist(),
                                                                                   inputs.ends.tolist())])
            return self.head(pooled.to(self.head.weight.dtype))
        return self.head(pool(hidden, mask, self.pooling).to(self.head.weight.dtype))


def new_head(lm_head: nn.Module | None, answer_ids: Sequence[int] | None, dim: int, classes: int, init: str,
             probe: Any, zero_std: float, device: Any) -> nn.Linear:
    """A (classes, dim) linear head: "zero" starts at N(0, zero_std) (exact zeros when zero_std is 0), "verbalizer"
    at the LM head's rows for each class's first answer token, "probe" at the trained probe's weights on the
    unstandardised features (LP-FT)."""
    head = nn.Linear(dim, classes, dtype=torch.float32).to(device)
    with torch.no_grad():
        if init == "verbalizer" and lm_head is not None and answer_ids is not None:
            head.weight.copy_(lm_head.weight[list(answer_ids)].detach().float())
            head.bias.zero_()
        elif init == "probe" and probe is not None:
            weight, bias = probe.raw_weights()
            head.weight.copy_(torch.tensor(weight, dtype=torch.float32))
            head.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        elif zero_std > 0:
            head.weight.normal_(0.0, zero_std)
            head.bias.zero_()
        else:
            head.weight.zero_()
            head.bias.zero_()
    return head


@torch.no_grad()
def predict_logits(classifier: SequenceClassifier, inputs: Sequence[Any], pad: int, device: Any, batch_size: int,
                   autocast: Any) -> torch.Tensor:
    """(n, classes) logits in input order; inputs run sorted by length so batches carry little padding."""
    was_training = classifier.training
    classifier.eval()
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]), reverse=True)
    logits = torch.empty(len(inputs), classifier.head.out_features, device=device)
    with onednn_linears(classifier):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad_rows([inputs[i] for i in rows], pad, device)
            with autocast():
                logits[rows] = classifier(ids, mask).float()
    classifier.train(was_training)
    return logits
