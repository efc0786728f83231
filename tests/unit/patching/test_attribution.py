"""Attribution patching: exact where the metric is linear, correlated with real patching."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import tiny_bridge, token_pair

from deceptprobe.patching import attribution_patch, patch_sweep
from deceptprobe.patching.attribution import atp_correlations, pearson_r
from deceptprobe.patching.metrics import logit_diff

METRIC = logit_diff(3, 5)


@pytest.mark.parametrize("kind", ["mlp_out", "resid_post"])
def test_exact_when_the_metric_is_linear_in_the_activation(kind):
    # Without norms, the last block's MLP output and resid_post reach the logits linearly,
    # so the first-order estimate is the patched metric itself, at every position.
    model = tiny_bridge("nonorm3")
    clean, corrupt = token_pair(batch=2, seq=6)
    atp = attribution_patch(model, clean, corrupt, kind=kind, metric=METRIC, layers=[-1])
    real = patch_sweep(model, clean, corrupt, kind=kind, metric=METRIC, layers=[-1])
    assert atp.shape == real.shape == (1, 6)
    assert (atp - real).abs().max() <= 1e-4


@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "head", "head_all_pos"])
def test_shapes_match_patch_sweep_and_estimates_correlate(kind):
    model = tiny_bridge("nonorm3")
    clean, corrupt = token_pair(batch=2, seq=6)
    atp = attribution_patch(model, clean, corrupt, kind=kind, metric=METRIC)
    real = patch_sweep(model, clean, corrupt, kind=kind, metric=METRIC)
    assert atp.shape == real.shape
    assert pearson_r(atp, real) > 0.8


def test_works_with_frozen_weights():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=1, seq=5)
    ref = attribution_patch(model, clean, corrupt, metric=METRIC)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        frozen = attribution_patch(model, clean, corrupt, metric=METRIC)
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
    assert torch.allclose(ref, frozen, atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_pearson_r():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert pearson_r(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson_r(a, -a) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="constant"):
        pearson_r(a, torch.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        pearson_r(a, torch.ones(4))


def test_atp_correlations_per_kind():
    model = tiny_bridge("nonorm3")
    clean, corrupt = token_pair(batch=1, seq=5)
    rs = atp_correlations(model, clean, corrupt, metric=METRIC, kinds=["mlp_out", "head"])
    assert list(rs) == ["mlp_out", "head"]
    assert all(-1.0 <= r <= 1.0 for r in rs.values())
