"""Mechanistic anomaly detection: Mahalanobis distance from trusted clean activations.

Mechanistic anomaly detection (MAD; Christiano 2022, formalised in "cupbearer", Jenner et al.,
https://github.com/ejnnr/cupbearer) flags inputs on which a model computes *differently* from a
trusted set of inputs, with no labels and no knowledge of what the anomaly (here: a backdoor
trigger) looks like. The classic baseline fits a Gaussian to each layer's activations on trusted
data and scores a new input by its Mahalanobis distance (Lee et al. 2018, "A Simple Unified
Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks"):

    d_l(x)^2 = (h_l(x) - mu_l)^T Sigma_l^{-1} (h_l(x) - mu_l)

Choices made here (each documented where it is used):

- **Covariance**: with ``d_model`` comparable to the number of trusted prompts the sample
  covariance is singular or badly conditioned, so it is shrunk toward a scaled identity,
  ``(1 - s) S + s (tr S / d) I``, with the Ledoit–Wolf (2004) coefficient ``s`` per layer
  (``shrinkage="ledoit_wolf"``, matching ``sklearn.covariance.LedoitWolf``), or a fixed ``s``.
- **Standardising layers**: distances differ in scale across layers, so each layer's distance
  is z-scored against the distances of *held-out* trusted rows (two-fold cross-fitting on the
  trusted set; in-sample distances would be optimistically small).
- **Combining layers**: the mean of the per-layer z-scores (``combine="mean"``, i.e. the sum
  divided by the number of layers — robust when the anomaly spreads over layers) or their
  maximum (``combine="max"`` — sensitive to an anomaly confined to one layer).

Caveat (see issue 4): an anomaly detector flags that the trigger is *present*, not that the
model intends to defect; compare against the clean twin organism to tell the two apart.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

__all__ = ["MahalanobisDetector", "ledoit_wolf_covariance"]


def ledoit_wolf_covariance(
    X: Float[Tensor, "layer batch d_model"], shrinkage: float | None = None
) -> tuple[
    Float[Tensor, "layer d_model"], Float[Tensor, "layer d_model d_model"], Float[Tensor, " layer"]
]:
    """Mean, shrunk covariance and shrinkage coefficient per layer.

    Args:
        X: Activations, one ``[batch, d_model]`` matrix per layer (float64 recommended).
        shrinkage: Fixed coefficient in ``[0, 1]``; ``None`` uses the Ledoit–Wolf estimate
            (identical to ``sklearn.covariance.ledoit_wolf``).

    Returns:
        ``(mean, covariance, shrinkage)``; the covariance is ``(1 - s) S + s mu I`` with ``S``
        the biased sample covariance and ``mu = tr(S) / d_model``.
    """
    n, d = X.shape[1], X.shape[2]
    mean = X.mean(1)
    Xc = X - mean.unsqueeze(1)
    S = torch.bmm(Xc.transpose(1, 2), Xc) / n
    mu = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) / d
    if shrinkage is None:
        # Ledoit & Wolf (2004), Lemma 3.2 / sklearn.covariance.ledoit_wolf_shrinkage.
        sq_norms = (Xc * Xc).sum(-1)  # [layer, batch]
        beta_ = (sq_norms * sq_norms).sum(-1)
        delta_ = (S * S).sum((-2, -1))
        beta = (beta_ / n - delta_) / (d * n)
        delta = (delta_ - 2 * mu * mu * d + d * mu * mu) / d
        beta = torch.minimum(beta, delta)
        s = torch.where(delta > 0, beta / delta.clamp_min(1e-300), torch.zeros_like(delta))
    else:
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        s = torch.full_like(mu, float(shrinkage))
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    cov = (1 - s)[:, None, None] * S + (s * mu)[:, None, None] * eye
    return mean, cov, s


def _precision(cov: Tensor) -> Tensor:
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    jitter = 1e-10 * torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
    chol, info = torch.linalg.cholesky_ex(cov + jitter[:, None, None] * eye)
    if bool((info != 0).any()):
        raise ValueError(
            "the trusted covariance is singular even after shrinkage (constant or duplicated "
            "activations?); use shrinkage > 0 or more varied trusted prompts"
        )
    return torch.cholesky_inverse(chol)


def _sq_dist(X: Tensor, mean: Tensor, prec: Tensor) -> Tensor:
    diff = X - mean.unsqueeze(1)
    return (torch.bmm(diff, prec) * diff).sum(-1)


class MahalanobisDetector(BaseEstimator):
    """Unsupervised per-layer Mahalanobis anomaly detector fitted on trusted activations.

    Args:
        shrinkage: ``"ledoit_wolf"`` (per-layer Ledoit–Wolf coefficient) or a fixed
            coefficient in ``[0, 1]`` toward the scaled identity.
        combine: ``"mean"`` of per-layer z-scores, or ``"max"``.
        random_state: Seed of the two-fold split used to standardise layer scores.
        device: Torch device for fitting and scoring (``None``: CPU).

    Attributes:
        location_: ``[layer, d_model]`` trusted means.
        precision_: ``[layer, d_model, d_model]`` inverse shrunk covariances.
        shrinkage_: ``[layer]`` shrinkage coefficients used.
        score_mean_: ``[layer]`` mean squared distance of held-out trusted rows.
        score_std_: ``[layer]`` their standard deviation.
        n_layers_: Number of layers.
        n_features_in_: ``d_model``.

    Example:
        >>> det = MahalanobisDetector().fit(trusted_acts)      # [layer, batch, d_model]
        >>> det.anomaly_score(new_acts)                        # higher = more anomalous
    """

    def __init__(
        self,
        *,
        shrinkage: Literal["ledoit_wolf"] | float = "ledoit_wolf",
        combine: Literal["mean", "max"] = "mean",
        random_state: int = 0,
        device: str | None = None,
    ) -> None:
        self.shrinkage = shrinkage
        self.combine = combine
        self.random_state = random_state
        self.device = device

    def _as_layers(self, X: Any, *, fitting: bool) -> Tensor:
        dev = torch.device(self.device) if self.device is not None else torch.device("cpu")
        if isinstance(X, Tensor):
            X = X.detach().to(dev, torch.float64)
        else:
            X = torch.as_tensor(np.asarray(X, dtype=np.float64), device=dev)
        if X.ndim == 2:
            X = X.unsqueeze(0)
        if X.ndim != 3:
            raise ValueError(
                f"expected [batch, d_model] or [layer, batch, d_model] activations, got shape "
                f"{tuple(X.shape)}"
            )
        if not torch.isfinite(X).all():
            raise ValueError(
                "activations contain NaN or inf; drop those rows (padding positions or an "
                "overflowed float16 cache) first"
            )
        if not fitting:
            check_is_fitted(self)
            if X.shape[0] != self.n_layers_ or X.shape[2] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[0]} layer(s) of {X.shape[2]} features, but the detector was "
                    f"fitted on {self.n_layers_} layer(s) of {self.n_features_in_}; score "
                    "activations from the same model and hooks it was fitted on"
                )
        return X

    def _shrink(self) -> float | None:
        if self.shrinkage == "ledoit_wolf":
            return None
        if isinstance(self.shrinkage, int | float) and 0 <= self.shrinkage <= 1:
            return float(self.shrinkage)
        raise ValueError(
            f"shrinkage must be 'ledoit_wolf' or a number in [0, 1], got {self.shrinkage!r}"
        )

    def fit(self, X: Float[Any, "*layer batch d_model"], y: None = None) -> MahalanobisDetector:
        """Fit per-layer Gaussians on trusted (clean) activations; no labels are used.

        Args:
            X: Trusted activations ``[batch, d_model]`` or ``[layer, batch, d_model]``.
            y: Ignored (present for scikit-learn API compatibility).

        Returns:
            ``self``.
        """
        if self.combine not in ("mean", "max"):
            raise ValueError(f"combine must be 'mean' or 'max', got {self.combine!r}")
        shrink = self._shrink()
        X = self._as_layers(X, fitting=True)
        n = X.shape[1]
        if n < 4:
            raise ValueError(f"need at least 4 trusted rows to fit and standardise, got {n}")
        mean, cov, s = ledoit_wolf_covariance(X, shrink)
        self.location_ = mean.cpu()
        self.precision_ = _precision(cov).cpu()
        self.shrinkage_ = s.cpu()
        # Two-fold cross-fitting: each half is scored by a Gaussian fitted on the other half.
        perm = torch.from_numpy(np.random.default_rng(self.random_state).permutation(n))
        halves = (perm[: n // 2].to(X.device), perm[n // 2 :].to(X.device))
        held_out = []
        for a, b in ((halves[0], halves[1]), (halves[1], halves[0])):
            m_a, c_a, _ = ledoit_wolf_covariance(X[:, a], shrink)
            held_out.append(_sq_dist(X[:, b], m_a, _precision(c_a)))
        d2 = torch.cat(held_out, dim=1)
        self.score_mean_ = d2.mean(1).cpu()
        self.score_std_ = d2.std(1).clamp_min(1e-12).cpu()
        self.n_layers_ = X.shape[0]
        self.n_features_in_ = X.shape[2]
        return self

    def score_layers(self, X: Float[Any, "*layer batch d_model"]) -> NDArray[np.float64]:
        """Per-layer z-scored squared Mahalanobis distances ``[layer, batch]``."""
        X = self._as_layers(X, fitting=False)
        dev = X.device
        d2 = _sq_dist(X, self.location_.to(dev), self.precision_.to(dev))
        z = (d2 - self.score_mean_.to(dev).unsqueeze(-1)) / self.score_std_.to(dev).unsqueeze(-1)
        return z.cpu().numpy()

    def anomaly_score(self, X: Float[Any, "*layer batch d_model"]) -> NDArray[np.float64]:
        """Anomaly score per row, higher = more anomalous (layers combined by ``combine``).

        Args:
            X: Activations with the layer count and width seen in ``fit``.

        Returns:
            ``[batch]`` float64 scores (about 0 ± 1 for trusted-like rows).
        """
        z = self.score_layers(X)
        return z.max(0) if self.combine == "max" else z.mean(0)

    def score_samples(self, X: Float[Any, "*layer batch d_model"]) -> NDArray[np.float64]:
        """scikit-learn's outlier-detector convention: higher = more normal
        (``-anomaly_score(X)``, as ``EllipticEnvelope.score_samples`` negates its distance).

        There is no ``score(X, y)``: an unsupervised detector has no accuracy to report.
        """
        return -self.anomaly_score(X)
