"""AUROC with a stratified bootstrap confidence interval, and means with t-intervals over seeds.

AUROC is computed as the Mann–Whitney U statistic over tied-average ranks (Hanley & McNeil
1982, "The meaning and use of the area under a ROC curve"), so it equals
``sklearn.metrics.roc_auc_score`` including ties. The bootstrap interval (Efron & Tibshirani
1993, *An Introduction to the Bootstrap*, percentile method) resamples positives and negatives
separately (stratified), so every replicate has both classes; all replicates — and several
score vectors at once, e.g. one per layer — are ranked in one vectorised call.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

__all__ = ["auroc", "auroc_ci", "mean_ci"]

from deceptprobe.stats import mean_ci  # noqa: E402  (the one interval helper, re-exported)


def _labels01(labels: ArrayLike, n: int) -> NDArray[np.bool_]:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be 1-D with one entry per score ({n}), got shape {y.shape}")
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(
            f"AUROC needs exactly two classes in labels, got {len(classes)} "
            f"({classes[:5].tolist()}); score a set holding both positives and negatives"
        )
    return y == classes[1]


def _scores(scores: ArrayLike) -> NDArray[np.float64]:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; AUROC is undefined for them")
    return s


def _auc_from_ranks(pos: NDArray[np.float64], neg: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vectorised Mann–Whitney AUROC along the last axis."""
    n_pos, n_neg = pos.shape[-1], neg.shape[-1]
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    u = ranks[..., :n_pos].sum(-1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc(
    scores: Float[ArrayLike, "*layer batch"], labels: ArrayLike
) -> float | NDArray[np.float64]:
    """Area under the ROC curve; higher scores should mean the positive class.

    Args:
        scores: One score per example, or ``[layer, batch]`` for several score vectors.
        labels: Two-class labels; the larger label (``np.unique(labels)[1]``) is positive.

    Returns:
        A float for 1-D scores, else an array with one AUROC per leading index.
    """
    s = _scores(scores)
    y = _labels01(labels, s.shape[-1])
    out = _auc_from_ranks(s[..., y], s[..., ~y])
    return float(out) if s.ndim == 1 else out


def auroc_ci(
    scores: Float[ArrayLike, "*layer batch"],
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> (
    tuple[float, float, float]
    | tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
):
    """AUROC with a stratified percentile-bootstrap ``1 - alpha`` confidence interval.

    The same bootstrap resamples are used for every leading index (layer), so per-layer
    intervals are comparable. ``n_boot=0`` skips the bootstrap and returns NaN bounds.

    Args:
        scores: One score per example, or ``[layer, batch]``.
        labels: Two-class labels; the larger label is positive.
        n_boot: Number of bootstrap replicates.
        seed: Seed of the resampling (deterministic).
        alpha: One minus the coverage (``0.05``: a 95% interval).

    Returns:
        ``(auroc, lo, hi)``, floats for 1-D scores, else arrays over the leading index.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = _scores(scores)
    y = _labels01(labels, s.shape[-1])
    pos, neg = s[..., y], s[..., ~y]
    point = _auc_from_ranks(pos, neg)
    if n_boot <= 0:
        lo = hi = np.full_like(point, np.nan)
    else:
        rng = np.random.default_rng(seed)
        ip = rng.integers(0, pos.shape[-1], size=(n_boot, pos.shape[-1]))
        ineg = rng.integers(0, neg.shape[-1], size=(n_boot, neg.shape[-1]))
        # [..., n_boot, n_pos] and [..., n_boot, n_neg]
        boot = _auc_from_ranks(pos[..., ip], neg[..., ineg])
        lo = np.quantile(boot, alpha / 2, axis=-1)
        hi = np.quantile(boot, 1 - alpha / 2, axis=-1)
    if s.ndim == 1:
        return float(point), float(lo), float(hi)
    return point, np.asarray(lo), np.asarray(hi)
