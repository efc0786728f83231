"""Probe figures: held-out AUROC by layer with bootstrap confidence bands.

Takes plain data (a ``SweepResult``, its ``to_dict()``, or any mapping/object with ``layers``,
``auroc`` and optionally ``ci_lo``/``ci_hi``), so this bottom-floor module imports nothing
from :mod:`deceptprobe.probing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

__all__ = ["auroc_by_layer"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _field(series: Any, name: str) -> Any:
    if isinstance(series, Mapping):
        return series.get(name)
    return getattr(series, name, None)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def auroc_by_layer(
    series: Any | Mapping[str, Any],
    *,
    title: str = "Probe AUROC by layer",
    chance_line: bool = True,
) -> go.Figure:
    """Line plot of AUROC per layer, one line (and shaded CI band) per series.

    Args:
        series: One sweep (``SweepResult``, its dict, or an object/mapping with ``layers``,
            ``auroc``, optional ``ci_lo``/``ci_hi``), or a mapping ``{label: sweep}`` for
            several series (e.g. ``{"before": ..., "after_sft": ...}``).
        title: Figure title.
        chance_line: Draw a dashed line at AUROC 0.5.

    Returns:
        The figure (not shown).
    """
    if _field(series, "auroc") is not None:
        named: Mapping[str, Any] = {"": series}
    elif isinstance(series, Mapping):
        named = series
    else:
        raise TypeError("series must be a sweep (with .auroc) or a mapping {label: sweep}")
    fig = go.Figure()
    for k, (label, s) in enumerate(named.items()):
        auroc: Sequence[float] = list(_field(s, "auroc"))
        layers = _field(s, "layers")
        layers = list(layers) if layers is not None else list(range(len(auroc)))
        color = _COLORS[k % len(_COLORS)]
        lo, hi = _field(s, "ci_lo"), _field(s, "ci_hi")
        if lo is not None and hi is not None and all(v is not None and v == v for v in [*lo, *hi]):
            fig.add_trace(
                go.Scatter(
                    x=[*layers, *layers[::-1]],
                    y=[*hi, *list(lo)[::-1]],
                    fill="toself",
                    fillcolor=_rgba(color, 0.2),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    name=f"{label} 95% CI",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=auroc,
                mode="lines+markers",
                line={"color": color},
                name=label or "AUROC",
                showlegend=bool(label),
            )
        )
    if chance_line:
        fig.add_hline(y=0.5, line_dash="dash", line_color="grey", annotation_text="chance")
    fig.update_layout(
        title=title,
        xaxis_title="layer",
        yaxis_title="held-out AUROC",
        yaxis_range=[0, 1.02],
        template="plotly_white",
    )
    return fig
