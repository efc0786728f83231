"""The package's one home for confidence intervals.

Every interval deceptprobe prints says how it was made and over how many units, because a
reader cannot judge ``[0.93, 1.00]`` without knowing whether it is over prompts or over seeds:

- :func:`wilson` — Wilson score interval of a proportion over ``n`` trials (Wilson, 1927);
  used for a rate measured on the prompts of one organism.
- :func:`newcombe_diff` — Newcombe's hybrid score interval of a difference of two independent
  proportions (Newcombe, 1998, method 10), built from the two Wilson intervals.
- :func:`mean_ci` — mean and Student-t interval over independent replicates (seeds).
- :func:`combine_independent` — a normal-approximation interval of the difference of two
  independent estimates from their own intervals (used for AUROC differences).
- :func:`over_seeds` — the study's rule for a quantity measured once per seed, each with a
  within-seed interval: with one seed the within-seed interval (over prompts); with several,
  the t-interval over seeds, never narrower than the average within-seed interval (so three
  seeds that all measure 1.00 on 200 prompts do not claim ``[1.00, 1.00]``).

This module is a leaf: it imports nothing from deceptprobe, so every floor may use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

__all__ = [
    "Interval",
    "combine_independent",
    "mean_ci",
    "newcombe_diff",
    "over_seeds",
    "wilson",
]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval, the method that made it, and its n."""

    value: float
    lo: float
    hi: float
    method: str
    n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "value": _clean(self.value),
            "ci95": [_clean(self.lo), _clean(self.hi)],
            "ci_method": self.method,
            "n": self.n,
        }


def _clean(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def wilson(p: float, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval ``[lo, hi]`` of a proportion ``p`` observed over ``n`` trials."""
    if n <= 0:
        return [math.nan, math.nan]
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a proportion must lie in [0, 1], got {p}")
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 (p = 1) the bound is exactly 0 (1); rounding would leave a ~1e-18 residue
    lo = 0.0 if p == 0.0 else max(0.0, centre - half)
    hi = 1.0 if p == 1.0 else min(1.0, centre + half)
    return [lo, hi]


def newcombe_diff(p1: float, n1: int, p2: float, n2: int) -> list[float]:
    """Newcombe's hybrid score interval of ``p1 - p2`` (independent proportions)."""
    l1, u1 = wilson(p1, n1)
    l2, u2 = wilson(p2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return [max(-1.0, lo), min(1.0, hi)]


def mean_ci(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean with a Student-t confidence interval over independent replicates.

    Returns:
        ``(mean, lo, hi)``. With a single value there is no spread to estimate, so the bounds
        are ``nan`` (not the value itself, which would claim zero uncertainty). Equal values
        give a zero-width interval.

    Raises:
        ValueError: ``values`` is empty.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if v.size == 1:
        return m, math.nan, math.nan
    half = float(
        student_t.ppf(0.5 + confidence / 2, df=v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    )
    return m, m - half, m + half


def combine_independent(
    a: float, a_ci: Sequence[float], b: float, b_ci: Sequence[float]
) -> list[float]:
    """Normal-approximation 95% interval of ``a - b`` from each estimate's own 95% interval.

    Each half-width is read as ``1.96`` standard errors (the larger side, to stay
    conservative for skewed intervals), and the standard errors add in quadrature.
    """
    ha = max(a - a_ci[0], a_ci[1] - a)
    hb = max(b - b_ci[0], b_ci[1] - b)
    half = math.sqrt(ha * ha + hb * hb)
    return [a - b - half, a - b + half]


def over_seeds(
    values: Sequence[float],
    within: Sequence[Sequence[float]],
    *,
    within_method: str,
    n_within: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Interval:
    """The study's interval for one quantity measured once per seed.

    Args:
        values: One estimate per seed.
        within: Each seed's own 95% interval (over its prompts).
        within_method: How ``within`` was made (e.g. ``"Wilson over prompts"``).
        n_within: Prompts (or pairs) behind each within-seed interval, for the method string.
        bounds: The quantity's range; the interval is clipped to it.

    Returns:
        An :class:`Interval` whose ``n`` is the number of seeds.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("over_seeds needs at least one seed's value")
    if len(within) != len(vals):
        raise ValueError("give one within-seed interval per value")
    per = f", n={n_within} each" if n_within else ""
    if len(vals) == 1:
        lo, hi = within[0]
        method = f"within-organism ({within_method}{per}); one seed, no between-seed interval"
        return Interval(vals[0], _clip(lo, bounds), _clip(hi, bounds), method, 1)
    m, lo, hi = mean_ci(vals)
    w_lo = float(np.mean([m - (v - w[0]) for v, w in zip(vals, within, strict=True)]))
    w_hi = float(np.mean([m + (w[1] - v) for v, w in zip(vals, within, strict=True)]))
    method = (
        f"t over seeds (n={len(vals)}), widened where narrower to the mean within-seed "
        f"interval ({within_method}{per})"
    )
    return Interval(
        m, _clip(min(lo, w_lo), bounds), _clip(max(hi, w_hi), bounds), method, len(vals)
    )


def _clip(x: float, bounds: tuple[float, float]) -> float:
    if x is None or math.isnan(x):
        return math.nan
    return min(bounds[1], max(bounds[0], float(x)))
