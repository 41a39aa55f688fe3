"""Tiny random models (Llama, GPT-2, GPT-NeoX, Gemma 3) and a word-level tokenizer built in the test: no downloads."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel, GPTNeoXConfig,
                          GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast)

WORDS = (
    "the a it was great terrible good bad movie film plot acting very not and of to is this that "
    "sentiment review positive negative question answer topic news sport business tech politics "
    "entertainment world science yes no true false premise hypothesis passage text label : . , ? !"
).split()


def tiny_tokenizer(merge_newlines: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE over a small vocabulary: offsets work, unknown words split into bytes.

    merge_newlines: "\n\n" is one token at the end of a text and two before a word, as in SmolLM2's tokenizer.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    merges = []
    for token in ["Ġ" + w for w in WORDS] + list(WORDS):  # space-led words first: single tokens
        for i in range(2, len(token) + 1):  # merge left to right: prefix + next character
            piece = token[:i]
            if piece not in vocab:
                merges.append((token[: i - 1], token[i - 1]))
                vocab[piece] = len(vocab)
    if merge_newlines:
        vocab["ĊĊ"] = len(vocab)
        merges.append(("Ċ", "Ċ"))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(vocab_size: int, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer width-32 Llama in fp32 with random weights."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def tiny_family_model(family: str, vocab_size: int, layers: int = 2, seed: int = 0):
    """A 2-layer width-32 random model of a family backbone.py knows, in fp32."""
    if family == "llama":
        return tiny_model(vocab_size, layers, seed)
    torch.manual_seed(seed)
    ids = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=256, **ids))
    elif family == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                                 intermediate_size=64, max_position_embeddings=256, **ids))
    elif family == "gemma3_text":  # sliding window shorter than the inputs, so local and global layers differ
        model = Gemma3ForCausalLM(Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                                   max_position_embeddings=256, sliding_window=4,
                                                   layer_types=["sliding_attention", "full_attention"][:layers],
                                                   **ids))
    else:
        raise ValueError(family)
    return model.eval()
