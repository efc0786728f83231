"""MahalanobisDetector: Ledoit–Wolf matches sklearn, shifted data flagged, fresh clean data not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.covariance import LedoitWolf
from sklearn.exceptions import NotFittedError

from deceptprobe.probing.anomaly import MahalanobisDetector, ledoit_wolf_covariance
from deceptprobe.probing.metrics import auroc

L, D = 3, 24


def correlated(n, seed, shift=0.0, layers=L):
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(123).normal(size=(layers, D, D)) / np.sqrt(D)
    X = np.einsum("lnd,lde->lne", rng.normal(size=(layers, n, D)), mix)
    X[..., 0] += shift
    return X


def test_ledoit_wolf_matches_sklearn():
    X = correlated(60, 0)
    mean, cov, s = ledoit_wolf_covariance(torch.tensor(X))
    for layer in range(L):
        ref = LedoitWolf().fit(X[layer])
        np.testing.assert_allclose(cov[layer].numpy(), ref.covariance_, atol=1e-10)
        np.testing.assert_allclose(mean[layer].numpy(), ref.location_)
        assert float(s[layer]) == pytest.approx(ref.shrinkage_)


@pytest.mark.parametrize("combine", ["mean", "max"])
def test_shifted_data_flagged_clean_data_not(combine):
    det = MahalanobisDetector(combine=combine).fit(correlated(300, 1))
    clean, clean2 = det.anomaly_score(correlated(150, 2)), det.anomaly_score(correlated(150, 3))
    shifted = det.anomaly_score(correlated(150, 4, shift=4.0))
    labels = np.r_[np.zeros(150), np.ones(150)]
    assert auroc(np.r_[clean, shifted], labels) > 0.97
    assert abs(auroc(np.r_[clean, clean2], labels) - 0.5) < 0.1
    if combine == "mean":  # z-scored against held-out trusted rows: clean rows sit near 0
        assert abs(float(np.mean(clean))) < 0.5


def test_single_layer_input_fixed_shrinkage_and_params():
    X = correlated(200, 5)[0]
    det = MahalanobisDetector(shrinkage=0.3).fit(torch.tensor(X, dtype=torch.float32))
    assert det.n_layers_ == 1 and det.n_features_in_ == D
    assert torch.allclose(det.shrinkage_, torch.tensor([0.3], dtype=torch.float64))
    assert det.anomaly_score(X[:7]).shape == (7,)
    assert det.score_layers(X[:7]).shape == (1, 7)
    assert clone(det).get_params() == det.get_params()
    det.set_params(combine="max")
    assert det.get_params()["combine"] == "max"


def test_bad_inputs():
    with pytest.raises(NotFittedError):
        MahalanobisDetector().anomaly_score(np.zeros((3, D)))
    det = MahalanobisDetector().fit(correlated(50, 6))
    with pytest.raises(ValueError, match="same model and hooks"):
        det.anomaly_score(correlated(5, 7, layers=2))
    with pytest.raises(ValueError, match="same model and hooks"):
        det.anomaly_score(np.zeros((L, 5, D + 1)))
    bad = correlated(50, 8)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        MahalanobisDetector().fit(bad)
    with pytest.raises(ValueError, match="shrinkage"):
        MahalanobisDetector(shrinkage=2.0).fit(correlated(50, 6))
    with pytest.raises(ValueError, match="combine"):
        MahalanobisDetector(combine="median").fit(correlated(50, 6))
    with pytest.raises(ValueError, match="at least 4"):
        MahalanobisDetector().fit(np.zeros((3, D)))


def test_sklearn_conventions():
    """score_samples follows scikit-learn's outlier convention (higher = more normal); there
    is no score(X, y) to shadow."""
    X = correlated(200, 5)
    det = MahalanobisDetector().fit(X)
    new = correlated(20, 6, shift=3.0)
    np.testing.assert_array_equal(det.score_samples(new), -det.anomaly_score(new))
    assert not hasattr(det, "score")
    assert clone(det).get_params() == det.get_params()
