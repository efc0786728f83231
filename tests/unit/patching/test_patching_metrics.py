"""Metrics: values, normalisation, and clear errors for metrics of the wrong shape."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import tiny_bridge, token_pair

from deceptprobe.patching import patch_sweep
from deceptprobe.patching.metrics import (
    check_metric_output,
    logit_diff,
    normalised,
    token_prob,
)
from deceptprobe.patching.patch import metric_of_run


def test_logit_diff_and_token_prob_values():
    logits = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]])
    assert torch.equal(logit_diff(2, 1)(logits), torch.tensor([2.0, 0.0]))
    probs = token_prob(0)(logits)
    assert torch.allclose(probs, torch.softmax(logits, -1)[:, 0])
    assert probs.shape == (2,)


def test_normalised_maps_corrupt_to_zero_and_clean_to_one():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=1, seq=5)
    base = logit_diff(3, 5)
    hi, lo = metric_of_run(model, clean, base), metric_of_run(model, corrupt, base)
    norm = normalised(base, clean=hi, corrupt=lo)
    assert metric_of_run(model, clean, norm) == pytest.approx(1.0, abs=1e-5)
    assert metric_of_run(model, corrupt, norm) == pytest.approx(0.0, abs=1e-5)
    sweep = patch_sweep(model, clean, corrupt, kind="resid_post", metric=norm, layers=[-1])
    assert float(sweep[0, -1]) == pytest.approx(1.0, abs=1e-4)


def test_normalised_refuses_equal_baselines():
    with pytest.raises(ValueError, match="no effect to recover"):
        normalised(logit_diff(1, 2), clean=0.5, corrupt=0.5)


@pytest.mark.parametrize("method", ["suffix", "hooks"])
def test_a_metric_returning_a_scalar_is_a_clear_error(method):
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=2, seq=4)

    def batch_mean(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, 3] - logits[:, 5]).mean()

    with pytest.raises(ValueError, match="one scalar per batch row"):
        patch_sweep(model, clean, corrupt, metric=batch_mean, method=method)


def test_a_metric_returning_vectors_or_non_tensors_is_a_clear_error():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        check_metric_output(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="tensor"):
        check_metric_output(1.0, 2)
