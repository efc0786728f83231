"""AUROC (vs roc_auc_score), stratified bootstrap CI, t-interval over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from deceptprobe.probing.metrics import auroc, auroc_ci, mean_ci


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(st.integers(0, 5), min_size=4, max_size=40),  # small ints: many ties
    seed=st.integers(0, 1000),
)
def test_auroc_equals_sklearn_with_ties(scores, seed):
    y = np.random.default_rng(seed).integers(0, 2, len(scores))
    y[0], y[1] = 0, 1
    assert auroc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_auroc_batched_and_label_types():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    S = rng.normal(size=(3, 50)) + y
    out = auroc(S, y)
    assert out.shape == (3,)
    for i in range(3):
        assert out[i] == pytest.approx(roc_auc_score(y, S[i]))
    assert auroc(S[0], y.astype(bool)) == pytest.approx(out[0])
    with pytest.raises(ValueError, match="two classes"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, float("nan")], [0, 1])


def test_bootstrap_ci_contains_point_and_narrows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400, 4000):
        y = np.r_[np.zeros(n // 2), np.ones(n // 2)]
        s = rng.normal(size=n) + 0.8 * y
        point, lo, hi = auroc_ci(s, y, n_boot=400, seed=0)
        assert lo <= point <= hi
        assert point == pytest.approx(roc_auc_score(y, s))
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_deterministic_batched_and_disabled():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    S = rng.normal(size=(2, 60)) + y
    a = auroc_ci(S, y, n_boot=200, seed=3)
    b = auroc_ci(S, y, n_boot=200, seed=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    single = auroc_ci(S[1], y, n_boot=200, seed=3)
    assert single[1] == pytest.approx(a[1][1]) and single[2] == pytest.approx(a[2][1])
    point, lo, hi = auroc_ci(S[0], y, n_boot=0)
    assert math.isnan(lo) and math.isnan(hi) and not math.isnan(point)


def test_mean_ci():
    m, lo, hi = mean_ci([0.9, 0.92, 0.94])
    assert m == pytest.approx(0.92)
    assert hi - m == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)  # t_{0.975, 2}
    assert m - lo == pytest.approx(hi - m)
    v, lo1, hi1 = mean_ci([0.7])
    assert v == 0.7 and math.isnan(lo1) and math.isnan(hi1)
    assert mean_ci([0.5, 0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        mean_ci([])
