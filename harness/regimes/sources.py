"""Where a trained regime's backbone comes from: one part of its composition (trained.py).

- `PRETRAINED`: a trainable copy of the pretrained weights (`full`, `prompt-ft`);
- `FRESH`: the same architecture from its own seeded random initialisation (`scratch`);
- `Backbone(adapters=config)`: a copy of the pretrained weights, frozen, with peft adapters trained beside them
  (`lora`, `ia3`); `config(settings, module)` gives the peft config;
- `TopBlocks()`: the top N blocks and the final norm, run on the cached hidden states that enter them (`head
  --unfreeze-top N`).

A source builds the module that trains (the decoder, or the whole causal LM when the objective scores answers),
says what one training input is (token ids, or cached hidden states) and how the trained module is deployed in
the causal LM (what forgetting measures). The base model is never modified. torch (and peft) are imported when a
cell trains: the registry that names these parts is read by the torch-free leaderboard.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from harness.backbone import (anatomy, block_parameters, decoder_parameters, decoder_swapped, top_blocks_only,
                              top_swapped)
from harness.errors import HarnessError


class Backbone:
    """The model's own architecture: its pretrained weights copied, or a fresh seeded initialisation; trained whole,
    or frozen with peft adapters trained beside it."""

    reads_features = False

    def __init__(self, weights: str = "pretrained", adapters: Callable[[Any, Any], Any] | None = None,
                 trains: Callable[[str], bool] | None = None):
        assert weights in ("pretrained", "fresh")
        self.weights = weights
        self.adapters = adapters  # (settings, module) -> a peft config; None: no adapters
        self.trains = trains  # parameter name -> whether it trains (bitfit: biases and norms); None: every one

    def build(self, model: Any, whole_lm: bool, settings: Any, seed: int) -> Any:
        """The module that trains: the decoder, or the whole causal LM (whole_lm), in fp32, in training mode."""
        if self.weights == "fresh":
            import torch

            torch.manual_seed(seed)
            fresh = type(model)(model.config).to(model.device)  # the model class's own initialisation
            module = fresh if whole_lm else fresh.get_decoder()
        else:
            import copy

            module = copy.deepcopy(model if whole_lm else anatomy(model).decoder)
        module = _trainable(module, settings)
        if self.trains is not None:
            for name, parameter in module.named_parameters():
                parameter.requires_grad_(self.trains(name))
        if self.adapters is None:
            return module
        try:
            from peft import get_peft_model
        except ImportError:
            raise HarnessError("adapters need peft: pip install 'harness[lora]' (or peft>=0.21)") from None
        return get_peft_model(module, self.adapters(settings, module))  # only the adapters require gradients

    def encode(self, lm: Any, shared: Any, texts: Sequence[str], settings: Any, progress: bool) -> list[Any]:
        """One training input per text: its token ids, cut to max_tokens."""
        return [list(ids) for ids in lm.tokenizer(list(texts), truncation=True,
                                                  max_length=settings.max_tokens)["input_ids"]]

    def body(self, model: Any, module: Any) -> Callable[[Any, Any], Any]:
        """(ids, mask) -> (batch, seq, dim) final-norm hidden states of the trained decoder; packed rows run with
        their block-diagonal mask and restarting positions."""

        def run(ids: Any, mask: Any) -> Any:
            if hasattr(ids, "positions"):  # training.PackedRows
                return module(input_ids=ids.ids, attention_mask=ids.mask, position_ids=ids.positions,
                              use_cache=False).last_hidden_state
            return module(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state

        return run

    def frozen_parameters(self, model: Any, module: Any) -> int:
        """Parameters the deployed model runs beyond `module`'s own (a peft model holds its frozen base)."""
        return 0

    def trained_block_parameters(self, model: Any, module: Any) -> int:
        """Block parameters every training token goes forward and backward through: all of them."""
        return block_parameters(model)

    @contextmanager
    def deployed(self, model: Any, module: Any, whole_lm: bool) -> Iterator[Any]:
        """The causal LM with what was trained in it: the trained LM itself, or the model with the trained
        decoder swapped in (a peft model: its base with the adapters active)."""
        with _evaluating(module):
            if whole_lm:
                yield module
                return
            with decoder_swapped(model, module.get_base_model() if hasattr(module, "get_base_model") else module):
                yield model


class TopBlocks:
    """Copies of the top N blocks and the final norm, trained on the cached hidden states entering them."""

    reads_features = True

    def build(self, model: Any, whole_lm: bool, settings: Any, seed: int) -> Any:
        import copy

        from torch import nn

        if whole_lm:
            raise HarnessError("the top blocks alone cannot score answers: use a new head")
        parts = anatomy(model)
        if settings.unfreeze_top > len(parts.blocks):
            raise HarnessError(f"--unfreeze-top {settings.unfreeze_top} exceeds the model's {len(parts.blocks)} blocks")
        module = nn.ModuleDict({"layers": copy.deepcopy(nn.ModuleList(parts.blocks[-settings.unfreeze_top:])),
                                "norm": copy.deepcopy(parts.final_norm)}).float()  # fp32 weights to train
        for p in module.parameters():
            p.requires_grad_(True)
        return module

    def encode(self, lm: Any, shared: Any, texts: Sequence[str], settings: Any, progress: bool) -> list[Any]:
        return shared.features.entering_top(texts, settings.unfreeze_top, settings.max_tokens, settings.batch_size,
                                            progress)

    def body(self, model: Any, module: Any) -> Callable[[Any, Any], Any]:
        parts = anatomy(model)

        def run(hidden: Any, mask: Any) -> Any:
            with top_blocks_only(parts, module["layers"], module["norm"]):
                return parts.decoder(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state

        return run

    def frozen_parameters(self, model: Any, module: Any) -> int:
        return decoder_parameters(model) - sum(p.numel() for p in module.parameters())

    def trained_block_parameters(self, model: Any, module: Any) -> int:
        return sum(p.numel() for p in module.parameters())  # the top blocks and final norm

    @contextmanager
    def deployed(self, model: Any, module: Any, whole_lm: bool) -> Iterator[Any]:
        with _evaluating(module), top_swapped(model, module["layers"], module["norm"]):
            yield model


@contextmanager
def _evaluating(module: Any) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _trainable(module: Any, settings: Any) -> Any:
    """fp32 master weights (bf16 only under autocast), every weight trainable, checkpointing if asked."""
    module = module.float()
    module.train()
    for p in module.parameters():
        p.requires_grad_(True)
    if settings.gradient_checkpointing and hasattr(module, "gradient_checkpointing_enable"):
        module.gradient_checkpointing_enable()
    return module


PRETRAINED = Backbone("pretrained")
FRESH = Backbone("fresh")
