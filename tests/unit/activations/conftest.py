"""Tiny models shared by the activation tests (built once per session, random weights)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from act_helpers import make_organism  # noqa: E402


@pytest.fixture(scope="session")
def organism():  # noqa: ANN201
    return make_organism()


@pytest.fixture(scope="session")
def gpt2():  # noqa: ANN201
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=3,
        n_embd=32,
        n_head=2,
        n_positions=32,
        vocab_size=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """Tiny models run far faster on one thread on a shared CPU; restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
