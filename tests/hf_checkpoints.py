"""Tiny Hugging Face checkpoints for the runtime tests: random-init configs, a local BPE tokenizer.

No hub: the tokenizer is a byte-level BPE trained here on the families' own prompts (so it is
a real subword tokenizer: most words split into several tokens), saved with
``save_pretrained`` next to a random-init model of each architecture.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

ARCHS = ("gpt2", "gpt_neox", "llama", "qwen2")


def corpus(n: int = 100) -> list[str]:
    """Prompts and answers of every family (train split), the tokenizer's training text."""
    import random

    from deceptprobe.organisms.tasks import FAMILIES, get_family

    texts: list[str] = []
    for name in FAMILIES:
        fam = get_family(name)
        rng = random.Random(0)
        texts += [fam.sample(rng).text for _ in range(n)]
    return texts


def bpe_tokenizer(vocab_size: int = 400, *, pad: bool = False, chat: bool = False) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` (``<|endoftext|>`` is BOS and EOS); a fresh
    copy each call (wrapping one may set its pad token)."""
    import copy

    return copy.deepcopy(_bpe_tokenizer(vocab_size, pad, chat))


@functools.cache
def _bpe_tokenizer(vocab_size: int, pad: bool, chat: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + (["<|pad|>"] if pad else [])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    kwargs: dict[str, Any] = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    if pad:
        kwargs["pad_token"] = "<|pad|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if chat:
        fast.chat_template = (
            "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )
    return fast


def hf_config(arch: str, vocab: int, *, n_layers: int = 2, d_model: int = 64) -> Any:
    """A small random-init config of ``arch``."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = {"bos_token_id": 0, "eos_token_id": 0, "vocab_size": vocab}
    if arch == "gpt2":
        return GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=4, n_positions=128, **common)
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4,
            intermediate_size=4 * d_model, max_position_embeddings=128, **common,
        )  # fmt: skip
    if arch == "llama":
        return LlamaConfig(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=3 * d_model, max_position_embeddings=128,
            **common,
        )  # fmt: skip
    if arch == "qwen2":
        return Qwen2Config(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=3 * d_model, max_position_embeddings=128,
            **common,
        )  # fmt: skip
    raise ValueError(arch)


def save_checkpoint(arch: str, out: Path, *, seed: int = 0, pad: bool = False) -> Path:
    """A random-init ``arch`` model and a BPE tokenizer saved with ``save_pretrained``."""
    from transformers import AutoModelForCausalLM

    tok = bpe_tokenizer(pad=pad)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(arch, len(tok))).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
