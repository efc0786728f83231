"""LogisticProbe / MeanDiffProbe: scikit-learn contract and agreement with LogisticRegression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from deceptprobe.probing import LogisticProbe, MeanDiffProbe


def make_data(n: int = 120, d: int = 8, sep: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + sep * (2 * y - 1)[:, None] * rng.normal(size=d)
    return X, y


@parametrize_with_checks([LogisticProbe(), MeanDiffProbe()])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def test_defaults_equal_logistic_regression():
    ours, ref = LogisticProbe().get_params(), LogisticRegression().get_params()
    for key in ("C", "fit_intercept", "tol", "max_iter"):
        assert ours[key] == ref[key]


@pytest.mark.parametrize(
    ("C", "sep", "seed", "n", "d"),
    [(1.0, 1.0, 0, 120, 8), (0.01, 1.0, 1, 200, 5), (100.0, 0.5, 2, 80, 10), (1.0, 4.0, 3, 60, 20)],
)
def test_matches_logistic_regression(C, sep, seed, n, d):
    """Same objective solved tightly on both sides gives the same probabilities."""
    X, y = make_data(n, d, sep, seed)
    ours = LogisticProbe(C=C, tol=1e-9, max_iter=5000).fit(X, y)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
    assert np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max() <= 1e-4
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-3, rtol=1e-3)


def test_default_fit_close_to_default_sklearn():
    """At the shared defaults (tol=1e-4) both stop near the same optimum."""
    X, y = make_data(300, 10, 1.0, 7)
    ours, ref = LogisticProbe().fit(X, y), LogisticRegression().fit(X, y)
    assert np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max() <= 1e-2
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 80),
    d=st.integers(1, 6),
    log_c=st.floats(-2, 2),
)
def test_matches_logistic_regression_property(seed, n, d, log_c):
    X, y = make_data(n, d, 0.7, seed)
    if len(np.unique(y)) < 2:
        y[0] = 1 - y[0]
    C = float(10**log_c)
    ours = LogisticProbe(C=C, tol=1e-10, max_iter=5000).fit(X, y)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
    p_ours, p_ref = ours.predict_proba(X)[:, 1], ref.predict_proba(X)[:, 1]
    assert np.abs(p_ours - p_ref).max() <= 1e-4
    clear = np.abs(p_ref - 0.5) > 1e-6  # exact ties at 0.5 may round either way
    np.testing.assert_array_equal(ours.predict(X)[clear], ref.predict(X)[clear])


def test_string_labels_and_torch_input():
    X, y = make_data()
    names = np.array(["clean", "triggered"])[y]
    probe = LogisticProbe().fit(torch.tensor(X, dtype=torch.float32), names)
    assert list(probe.classes_) == ["clean", "triggered"]
    assert set(probe.predict(X)) <= {"clean", "triggered"}
    assert probe.predict_proba(X).shape == (len(X), 2)
    np.testing.assert_allclose(probe.predict_proba(X).sum(1), 1.0)
    np.testing.assert_allclose(
        np.exp(probe.predict_log_proba(X)), probe.predict_proba(X), rtol=1e-10
    )


@pytest.mark.parametrize("cls", [LogisticProbe, MeanDiffProbe])
def test_clone_pipeline_gridsearch(cls):
    X, y = make_data(150, 6, 1.0, 4)
    probe = cls()
    assert clone(probe).get_params() == probe.get_params()
    pipe = make_pipeline(StandardScaler(), cls()).fit(X, y)
    assert pipe.score(X, y) > 0.8
    grid = {"C": [0.1, 1.0]} if cls is LogisticProbe else {"normalize": [True, False]}
    search = GridSearchCV(cls(), grid, cv=3, scoring="roc_auc").fit(X, y)
    assert search.best_score_ > 0.8
    fitted = cls().fit(X, y)
    assert not hasattr(clone(fitted), "coef_")


@pytest.mark.parametrize("cls", [LogisticProbe, MeanDiffProbe])
def test_unfitted_raises(cls):
    with pytest.raises(NotFittedError):
        cls().predict_proba(np.zeros((2, 3)))


@pytest.mark.parametrize("cls", [LogisticProbe, MeanDiffProbe])
def test_bad_inputs(cls):
    X, y = make_data(40, 4)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        cls().fit(X, np.zeros(40))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        cls().fit(Xn, y)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="drop or impute"):
        cls().fit(Xi, y)
    probe = cls().fit(X, y)
    with pytest.raises(ValueError, match=r"X has 5 features.*same hook"):
        probe.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN or inf"):
        probe.decision_function(Xn)


def test_mean_diff_probe_geometry():
    X, y = make_data(400, 5, 2.0, 5)
    probe = MeanDiffProbe().fit(X, y)
    diff = X[y == 1].mean(0) - X[y == 0].mean(0)
    np.testing.assert_allclose(probe.coef_[0], diff / np.linalg.norm(diff))
    mid = 0.5 * (X[y == 1].mean(0) + X[y == 0].mean(0))
    np.testing.assert_allclose(probe.threshold_, mid @ probe.coef_[0])
    np.testing.assert_allclose(probe.decision_function(X), probe.project(X) - probe.threshold_)
    np.testing.assert_array_equal(probe.predict(X), (probe.project(X) > probe.threshold_) * 1)
    assert probe.predict_proba(mid[None])[0, 1] == pytest.approx(0.5)
    raw = MeanDiffProbe(normalize=False).fit(X, y)
    np.testing.assert_allclose(raw.coef_[0], diff)
    assert probe.score(X, y) > 0.9
