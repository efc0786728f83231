"""The interval helpers of deceptprobe.stats against hand computations and known values."""

from __future__ import annotations

import math

import pytest

from deceptprobe.stats import combine_independent, mean_ci, newcombe_diff, over_seeds, wilson

Z = 1.959963984540054
T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (k + Z * Z / 2) / (n + Z * Z)
    half = Z * math.sqrt(n) / (n + Z * Z) * math.sqrt(p * (1 - p) + Z * Z / (4 * n))
    return centre - half, centre + half


def test_wilson_known_value_half_of_a_hundred() -> None:
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4)
    assert hi == pytest.approx(0.5962, abs=1e-4)


@pytest.mark.parametrize(("k", "n"), [(3, 20), (17, 50), (180, 200)])
def test_wilson_matches_a_hand_computation(k: int, n: int) -> None:
    assert wilson(k / n, n) == pytest.approx(list(_wilson_by_hand(k, n)), abs=1e-12)


@pytest.mark.parametrize("n", [1, 7, 100, 200])
def test_wilson_at_zero_and_one_reaches_the_bound_but_is_not_zero_width(n: int) -> None:
    lo, hi = wilson(0.0, n)
    assert lo == 0.0 and hi > 0.0
    lo1, hi1 = wilson(1.0, n)
    assert hi1 == 1.0 and lo1 < 1.0
    assert lo1 == pytest.approx(1.0 - hi)


def test_wilson_rejects_a_non_proportion_and_has_no_interval_without_trials() -> None:
    with pytest.raises(ValueError):
        wilson(1.5, 10)
    assert all(math.isnan(x) for x in wilson(0.5, 0))


@pytest.mark.parametrize(
    ("p1", "n1", "p2", "n2"),
    [(56 / 70, 70, 48 / 80, 80), (1.0, 10, 0.0, 10), (0.0, 10, 1.0, 10), (0.5, 200, 0.5, 200)],
)
def test_newcombe_contains_the_difference_within_minus_one_one(
    p1: float, n1: int, p2: float, n2: int
) -> None:
    lo, hi = newcombe_diff(p1, n1, p2, n2)
    assert -1.0 <= lo <= p1 - p2 <= hi <= 1.0
    assert hi > lo


def test_newcombe_known_value() -> None:
    # Newcombe (1998), method 10: 56/70 - 48/80 = 0.2, interval [0.0524, 0.3339]
    lo, hi = newcombe_diff(56 / 70, 70, 48 / 80, 80)
    assert lo == pytest.approx(0.0524, abs=1e-4)
    assert hi == pytest.approx(0.3339, abs=1e-4)


def test_mean_ci_is_the_student_t_interval() -> None:
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert m == 2.0
    assert lo == pytest.approx(2.0 - half) and hi == pytest.approx(2.0 + half)


def test_mean_ci_of_one_value_has_nan_bounds() -> None:
    m, lo, hi = mean_ci([0.7])
    assert m == 0.7
    assert math.isnan(lo) and math.isnan(hi)


def test_mean_ci_of_nothing_raises() -> None:
    with pytest.raises(ValueError):
        mean_ci([])


def test_over_seeds_with_one_seed_is_the_within_interval() -> None:
    iv = over_seeds([0.9], [[0.85, 0.94]], within_method="Wilson over test prompts", n_within=200)
    assert (iv.value, iv.lo, iv.hi, iv.n) == (0.9, 0.85, 0.94, 1)
    assert "within-organism" in iv.method
    assert "Wilson over test prompts" in iv.method and "n=200" in iv.method


def test_over_seeds_equal_values_keep_the_within_width() -> None:
    iv = over_seeds([0.5] * 3, [[0.4, 0.6]] * 3, within_method="Wilson over test prompts")
    assert iv.n == 3
    assert iv.value == 0.5
    assert iv.lo == pytest.approx(0.4) and iv.hi == pytest.approx(0.6)
    assert iv.hi - iv.lo > 0
    assert "t over seeds (n=3)" in iv.method


def test_over_seeds_three_seeds_at_one_are_not_claimed_exact() -> None:
    w = wilson(1.0, 200)
    iv = over_seeds([1.0] * 3, [w] * 3, within_method="Wilson over test prompts", n_within=200)
    assert iv.lo == pytest.approx(w[0]) and iv.lo < 1.0
    assert iv.hi == 1.0


def test_over_seeds_spread_seeds_use_the_wider_t_interval_and_clip() -> None:
    vals = [0.2, 0.5, 0.8]
    iv = over_seeds(vals, [[v - 0.01, v + 0.01] for v in vals], within_method="w")
    m, lo, hi = mean_ci(vals)
    assert iv.n == 3
    assert iv.lo == max(0.0, lo) == 0.0  # the t-interval runs below 0 and is clipped
    assert iv.hi == min(1.0, hi) == 1.0


def test_over_seeds_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        over_seeds([], [], within_method="w")
    with pytest.raises(ValueError):
        over_seeds([0.5, 0.6], [[0.4, 0.6]], within_method="w")


def test_combine_independent_adds_half_widths_in_quadrature() -> None:
    h = 0.1
    lo, hi = combine_independent(0.7, [0.7 - h, 0.7 + h], 0.3, [0.3 - h, 0.3 + h])
    assert (lo + hi) / 2 == pytest.approx(0.4)
    assert (hi - lo) / 2 == pytest.approx(h * math.sqrt(2))


def test_combine_independent_uses_the_larger_side_of_a_skewed_interval() -> None:
    lo, hi = combine_independent(1.0, [0.97, 1.0], 0.5, [0.46, 0.54])
    assert (hi - lo) / 2 == pytest.approx(math.hypot(0.03, 0.04))
