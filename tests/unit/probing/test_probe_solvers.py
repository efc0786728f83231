"""Batched multi-layer solvers equal independent per-layer fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from deceptprobe.probing import LogisticProbe, MeanDiffProbe
from deceptprobe.probing.solvers import fit_logistic_layers, fit_mean_diff_layers


def layered(n_layers=5, n=150, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n_layers, n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    strength = torch.linspace(0.0, 3.0, n_layers, dtype=torch.float64)
    X += strength[:, None, None] * (2 * y - 1)[None, :, None] * w / w.norm()
    return X, y


@pytest.mark.parametrize("C", [0.1, 1.0, 50.0])
def test_multi_layer_fit_equals_per_layer_sklearn(C):
    X, y = layered()
    fit = fit_logistic_layers(X, y, C=C, tol=1e-9, max_iter=2000)
    assert bool(fit.converged.all())
    for layer in range(X.shape[0]):
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X[layer].numpy(), y.numpy())
        z = X[layer] @ fit.coef[layer] + fit.intercept[layer]
        p = torch.sigmoid(z).numpy()
        assert np.abs(p - ref.predict_proba(X[layer].numpy())[:, 1]).max() <= 1e-4
        single = fit_logistic_layers(X[layer : layer + 1], y, C=C, tol=1e-9, max_iter=2000)
        torch.testing.assert_close(single.coef[0], fit.coef[layer], atol=1e-5, rtol=1e-5)


def test_multi_layer_fit_equals_logistic_probe_at_defaults():
    X, y = layered(n_layers=3, seed=1)
    fit = fit_logistic_layers(X, y, tol=1e-4, max_iter=100)
    for layer in range(3):
        probe = LogisticProbe().fit(X[layer], y)
        np.testing.assert_allclose(probe.coef_[0], fit.coef[layer].numpy(), rtol=1e-6, atol=1e-9)


def test_per_layer_labels_and_no_intercept():
    X, y = layered(n_layers=2, seed=2)
    ys = torch.stack([y, 1 - y])
    fit = fit_logistic_layers(X, ys, fit_intercept=False, tol=1e-9, max_iter=2000)
    assert torch.all(fit.intercept == 0)
    ref = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10000)
    ref.fit(X[1].numpy(), (1 - y).numpy())
    np.testing.assert_allclose(fit.coef[1].numpy(), ref.coef_[0], atol=1e-4)


def test_separable_data_warns_and_stays_finite():
    X = torch.tensor([[[-2.0], [-1.0], [1.0], [2.0]]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    with pytest.warns(ConvergenceWarning):
        fit = fit_logistic_layers(X, y, C=float("inf"), tol=1e-12, max_iter=5)
    assert torch.isfinite(fit.coef).all()


def test_bad_shapes_and_labels():
    X, y = layered(n_layers=2)
    with pytest.raises(ValueError, match="unsqueeze"):
        fit_logistic_layers(X[0], y)
    with pytest.raises(ValueError, match="one 0/1 label per row"):
        fit_logistic_layers(X, y[:-1])
    with pytest.raises(ValueError, match="0 or 1"):
        fit_logistic_layers(X, y * 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_mean_diff_layers(X, torch.zeros_like(y))


def test_mean_diff_layers_equal_probe():
    X, y = layered(n_layers=3, seed=3)
    fit = fit_mean_diff_layers(X, y)
    for layer in range(3):
        probe = MeanDiffProbe().fit(X[layer], y)
        np.testing.assert_allclose(probe.coef_[0], fit.direction[layer].numpy(), atol=1e-12)
        assert probe.threshold_ == pytest.approx(float(fit.threshold[layer]))
        assert probe.scale_ == pytest.approx(float(fit.scale[layer]))


def test_layer_chunks_do_not_change_the_fit():
    X, y = layered(n_layers=5, seed=4)
    whole = fit_logistic_layers(X, y, tol=1e-8, max_iter=1000, layer_chunk=5)
    for chunk in (1, 2):
        part = fit_logistic_layers(X, y, tol=1e-8, max_iter=1000, layer_chunk=chunk)
        torch.testing.assert_close(part.coef, whole.coef, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(part.intercept, whole.intercept, atol=1e-6, rtol=1e-6)
    assert whole.n_iter.shape == (5,) and whole.converged.all()
