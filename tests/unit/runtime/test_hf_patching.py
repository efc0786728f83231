"""Patching an HF causal LM equals transformer_lens.patching on the same model, bridge-booted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from deceptprobe.patching import attribution_patch, patch_sweep
from deceptprobe.patching.metrics import logit_diff
from deceptprobe.patching.spec import KINDS
from deceptprobe.runtime.hf import load_hf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "patching"))
from test_patch_sweep import METRIC, tl_reference  # noqa: E402


@pytest.fixture(scope="module", params=["gpt2", "gpt_neox", "llama"])
def hf_setup(request, hf_dirs):
    from transformer_lens import TransformerBridge

    hm = load_hf(hf_dirs[request.param], device="cpu")
    bridge = TransformerBridge.boot_transformers(
        str(hf_dirs[request.param]),
        hf_model=load_hf(hf_dirs[request.param], device="cpu").model,  # the bridge wraps it
        tokenizer=hm.tokenizer.hf,
        device="cpu",
    )
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(1, hm.d_vocab, (2, 5), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 2:4] = torch.randint(1, hm.d_vocab, (2, 2), generator=gen)
    return hm, bridge, clean, corrupt


@pytest.mark.parametrize("method", ["suffix", "hooks"])
@pytest.mark.parametrize("kind", KINDS)
def test_hf_patching_equals_transformer_lens(hf_setup, kind, method):
    """Both paths: the prefix-reusing one (keys/values from transformers' cache) and plain
    batched forward passes."""
    hm, bridge, clean, corrupt = hf_setup
    ref = tl_reference(bridge, clean, corrupt, kind)
    got = patch_sweep(hm, clean, corrupt, kind=kind, metric=METRIC, method=method, batch_size=6)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-4, kind
    # a bare PreTrainedModel is wrapped the same way
    if kind == "resid_pre":
        bare = patch_sweep(hm.model, clean, corrupt, kind=kind, metric=METRIC)
        assert (bare - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "head"])
def test_hf_attribution_patching_equals_it_on_the_bridge(hf_setup, kind):
    """The same gradients through TransformerLens-named hooks on both backends."""
    hm, bridge, clean, corrupt = hf_setup
    metric = logit_diff(3, 5)
    atp = attribution_patch(hm, clean, corrupt, kind=kind, metric=metric)
    ref = attribution_patch(bridge, clean, corrupt, kind=kind, metric=metric)
    assert atp.shape == ref.shape
    assert (atp - ref).abs().max() <= 1e-4
