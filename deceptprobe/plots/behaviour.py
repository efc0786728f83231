"""Figures of behaviour before and after safety training (plotly; callers show or save)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def defection_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str = "Defection before and after safety training",
    metrics: Sequence[str] = ("triggered_defect_rate", "clean_defect_rate", "redteam_defect_rate"),
) -> go.Figure:
    """Grouped bars: one group per stage (``before``, ``sft``, ...), one bar per metric.

    Args:
        rows: ``{"stage": str, metric: float, metric + "_ci": [lo, hi] (optional)}`` dicts.
        title: figure title.
        metrics: which rates to draw (missing ones are skipped per row).
    """
    fig = go.Figure()
    stages = [str(r["stage"]) for r in rows]
    for i, m in enumerate(metrics):
        ys, lo, hi = [], [], []
        for r in rows:
            v = r.get(m)
            ys.append(v)
            ci = r.get(f"{m}_ci") or [v, v]
            lo.append(None if v is None or ci[0] is None else v - ci[0])
            hi.append(None if v is None or ci[1] is None else ci[1] - v)
        if all(v is None for v in ys):
            continue
        fig.add_bar(
            name=m.replace("_", " "),
            x=stages,
            y=ys,
            marker_color=PALETTE[i % len(PALETTE)],
            error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis={"title": "rate", "range": [0, 1.05]},
        xaxis={"title": "model"},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
        height=380,
    )
    return fig


def persistence_curves(
    points: Sequence[Mapping[str, Any]],
    *,
    title: str = "Backdoor persistence over the safety-training budget",
) -> go.Figure:
    """Triggered defection (solid) and helpfulness (dashed) against steps, one colour per lr.

    Args:
        points: ``{"steps", "lr", "triggered_defect_rate", "helpful_acc", "method"?}`` dicts.
    """
    fig = go.Figure()
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault((str(p.get("method", "")), float(p["lr"])), []).append(p)
    for i, ((method, lr), pts) in enumerate(sorted(groups.items())):
        pts = sorted(pts, key=lambda p: p["steps"])
        colour = PALETTE[i % len(PALETTE)]
        label = f"{method} lr={lr:g}".strip()
        fig.add_scatter(
            x=[p["steps"] for p in pts],
            y=[p["triggered_defect_rate"] for p in pts],
            name=f"{label} triggered defection",
            mode="lines+markers",
            line={"color": colour},
        )
        fig.add_scatter(
            x=[p["steps"] for p in pts],
            y=[p.get("helpful_acc") for p in pts],
            name=f"{label} helpful acc",
            mode="lines+markers",
            line={"color": colour, "dash": "dash"},
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "safety-training steps"},
        yaxis={"title": "rate", "range": [0, 1.05]},
        template="plotly_white",
        height=380,
    )
    return fig


def score_distributions(
    triggered: Sequence[float],
    clean: Sequence[float],
    *,
    title: str = "Detector scores",
    auroc: float | None = None,
) -> go.Figure:
    """Overlaid histograms of detector scores on triggered and clean prompts."""
    fig = go.Figure()
    fig.add_histogram(x=list(triggered), name="triggered", opacity=0.6, marker_color="#d62728")
    fig.add_histogram(x=list(clean), name="clean", opacity=0.6, marker_color="#1f77b4")
    suffix = f" (AUROC {auroc:.3f})" if auroc is not None else ""
    fig.update_layout(
        title=title + suffix,
        barmode="overlay",
        xaxis={"title": "score (higher = more suspicious)"},
        yaxis={"title": "prompts"},
        template="plotly_white",
        height=320,
    )
    return fig
