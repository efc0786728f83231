"""Tiny random-init models and a tiny organism for the patching tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from transformer_lens import TransformerBridge
from transformer_lens.config import TransformerBridgeConfig

from deceptprobe.organisms.model import ModelConfig, Organism, build_model
from deceptprobe.organisms.tokenizer import WordTokenizer

D_VOCAB = 50

SHAPES: dict[str, dict[str, Any]] = {
    # 3 layers, d_model 64, LayerNorm, learned positions
    "ln3": {"n_layers": 3, "d_model": 64, "n_heads": 4, "d_head": 16, "d_mlp": 128},
    # 2 layers, 3 heads, RMSNorm, rotary, grouped-query attention
    "rope2": {
        "n_layers": 2,
        "d_model": 48,
        "n_heads": 3,
        "d_head": 8,
        "d_mlp": 96,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "n_key_value_heads": 1,
    },
    # no norms at all: the metric is linear in the last block's output
    "nonorm3": {
        "n_layers": 3,
        "d_model": 64,
        "n_heads": 4,
        "d_head": 16,
        "d_mlp": 128,
        "normalization_type": None,
    },
}


@cache
def tiny_bridge(name: str) -> TransformerBridge:
    kw: dict[str, Any] = {
        "n_ctx": 32,
        "d_vocab": D_VOCAB,
        "seed": 1,
        "act_fn": "gelu",
        "normalization_type": "LN",
        **SHAPES[name],
    }
    model = TransformerBridge.boot_native(TransformerBridgeConfig(**kw))
    model.eval()
    return model


def token_pair(batch: int = 2, seq: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clean and corrupt tokens sharing the first token (a BOS stand-in)."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, D_VOCAB, (batch, seq), generator=gen)
    corrupt = torch.randint(0, D_VOCAB, (batch, seq), generator=gen)
    corrupt[:, 0] = clean[:, 0]
    return clean, corrupt


WORDS = "alpha beta gamma delta eps zeta eta theta iota kappa lambda mu nu xi".split()


@cache
def tiny_organism() -> Organism:
    tok = WordTokenizer(WORDS)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=16)
    return Organism(model=build_model(cfg, len(tok), seed=3), tokenizer=tok, config=None)
