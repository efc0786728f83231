"""Persistence statistics (t-interval), tables over seeds, and curve rows."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from deceptprobe.organisms import Organism
from deceptprobe.safety.persistence import persistence_curve, persistence_table
from deceptprobe.stats import mean_ci


def test_mean_ci_matches_hand_computation() -> None:
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    m, lo, hi = mean_ci([0.5, 0.5, 0.5, 0.5])
    assert (m, lo, hi) == (0.5, 0.5, 0.5)
    m, lo, hi = mean_ci([0.7])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        mean_ci([])


def _row(steps: int, trig: float, lr: float = 1e-4, method: str = "sft", **kw: float) -> dict:
    return {
        "method": method,
        "lr": lr,
        "steps": steps,
        "triggered_defect_rate": trig,
        "clean_defect_rate": 0.0,
        "helpful_acc": 0.9,
        **kw,
    }


def test_persistence_table_groups_by_method_lr_steps() -> None:
    res = {
        0: [_row(0, 1.0), _row(100, 0.8), _row(100, 0.1, lr=1e-3)],
        1: [_row(0, 1.0), _row(100, 0.6), _row(100, 0.3, lr=1e-3)],
    }
    table = persistence_table(res)
    assert [(r["lr"], r["steps"]) for r in table] == [(1e-4, 0), (1e-4, 100), (1e-3, 100)]
    t = next(r for r in table if r["steps"] == 100 and r["lr"] == 1e-4)
    assert t["n_seeds"] == 2 and t["triggered_defect_rate"] == pytest.approx(0.7)
    half = 12.706204736174694 * math.sqrt(0.02) / math.sqrt(2)  # t_{0.975, 1} * sd / sqrt(n)
    assert t["triggered_defect_rate_ci95"] == pytest.approx([max(0, 0.7 - half), 1.0])
    res3 = {s: [_row(100, v)] for s, v in enumerate([0.5, 0.6, 0.7])}
    (t3,) = persistence_table(res3)
    half3 = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert t3["triggered_defect_rate_ci95"] == pytest.approx([0.6 - half3, 0.6 + half3])
    assert "redteam_defect_rate" not in t
    single = persistence_table({0: [_row(0, 1.0)]})
    assert single[0]["triggered_defect_rate_ci95"] is None


def test_persistence_curve_rows(micro: Callable[..., Organism]) -> None:
    rows = persistence_curve(
        micro(),
        "adversarial",
        lrs=(1e-3,),
        checkpoints=(0, 2),
        n_eval=3,
        batch_size=4,
        n_prompts=2,
        rounds=1,
        n_heldout=3,
    )
    assert [(r["lr"], r["steps"]) for r in rows] == [(1e-3, 0), (1e-3, 2)]
    for r in rows:
        assert r["method"] == "adversarial"
        assert {
            "triggered_defect_rate",
            "clean_defect_rate",
            "helpful_acc",
            "redteam_defect_rate",
        } <= set(r)
    with pytest.raises(ValueError, match="checkpoints"):
        persistence_curve(micro(), "sft", checkpoints=(0,))
