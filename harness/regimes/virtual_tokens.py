"""A soft prompt's start (prompt-tuning: the template's own words);
read by the answer-score objective and the soft-prompt regimes (soft_prompt.py)."""

from __future__ import annotations

import re
from typing import Any

from harness.types import Template


def template_words(template: Template) -> str:
    """The template's own text, its Jinja fields and tags removed: what a soft prompt starts from."""
    words = " ".join(re.sub(r"{{.*?}}|{%.*?%}|{#.*?#}", " ", template.source, flags=re.S).split())
    return words or " ".join(template.verbalizers)


def initialise_from_text(module: Any, tokenizer: Any, text: str) -> None:
    """Set a prompt-tuning model's virtual tokens to the embeddings of `text`'s tokens, repeated to fill them
    (peft's TEXT initialisation, without loading a tokenizer by name)."""
    import torch

    encoder = module.prompt_encoder[module.active_adapter]
    n = encoder.embedding.weight.shape[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id or 0]
    ids = (ids * (n // len(ids) + 1))[:n]
    with torch.no_grad():
        words = module.get_input_embeddings()(torch.tensor(ids, device=encoder.embedding.weight.device))
        encoder.embedding.weight.copy_(words.to(encoder.embedding.weight.dtype))
