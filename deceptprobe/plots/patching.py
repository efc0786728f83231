"""Heatmaps of activation-patching results (layer x position, layer x head).

Each function returns a ``plotly.graph_objects.Figure``; the caller shows or saves it. Colours
are diverging and centred at 0, so restoring patches (positive) and anti-restoring ones
(negative) read differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go


def _as_rows(effect: Any) -> list[list[float]]:
    if hasattr(effect, "detach"):
        effect = effect.detach().float().cpu().tolist()
    elif hasattr(effect, "tolist"):
        effect = effect.tolist()
    rows = [list(map(float, r)) for r in effect]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("effect must be a non-empty 2-D array (layer x position or layer x head)")
    return rows


def _bound(rows: list[list[float]]) -> float:
    m = max((abs(v) for r in rows for v in r if v == v), default=0.0)
    return m if m > 0 else 1.0


def patching_heatmap(
    effect: Any,
    tokens: Sequence[str],
    *,
    title: str = "Activation patching",
    kind: str = "resid_pre",
    layer_labels: Sequence[str] | None = None,
    colorbar_title: str = "metric",
) -> go.Figure:
    """Layer x position heatmap with the prompt's tokens on the x axis.

    Args:
        effect: ``[layer, pos]`` values (tensor, array or nested lists).
        tokens: one string per position (BOS included), used as x tick labels.
        title: figure title.
        kind: the patched activation, shown in the y axis title.
        layer_labels: one label per row; default ``"L0" ...``.
        colorbar_title: what the colours measure.
    """
    rows = _as_rows(effect)
    if len(tokens) != len(rows[0]):
        raise ValueError(f"got {len(tokens)} tokens for {len(rows[0])} positions")
    labels = list(layer_labels) if layer_labels is not None else [f"L{i}" for i in range(len(rows))]
    if len(labels) != len(rows):
        raise ValueError(f"got {len(labels)} layer labels for {len(rows)} rows")
    bound = _bound(rows)
    positions = list(range(len(tokens)))
    hover = [
        [f"{labels[i]}, pos {p} {tokens[p]!r}: %{{z:.4g}}" for p in positions]
        for i in range(len(rows))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=positions,
            y=labels,
            colorscale="RdBu",
            reversescale=True,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            hovertemplate=[[h + "<extra></extra>" for h in r] for r in hover],
            colorbar={"title": {"text": colorbar_title}},
        )
    )
    fig.update_layout(
        title=title,
        xaxis={
            "title": "token",
            "tickmode": "array",
            "tickvals": positions,
            "ticktext": list(tokens),
            "tickangle": -45,
        },
        yaxis={"title": f"layer ({kind})", "autorange": "reversed"},
    )
    return fig


def head_heatmap(
    effect: Any,
    *,
    title: str = "Attention-head patching",
    colorbar_title: str = "metric",
) -> go.Figure:
    """Layer x head heatmap (e.g. ``patch_sweep(..., kind="head_all_pos")``)."""
    rows = _as_rows(effect)
    bound = _bound(rows)
    heads = list(range(len(rows[0])))
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=heads,
            y=[f"L{i}" for i in range(len(rows))],
            colorscale="RdBu",
            reversescale=True,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            hovertemplate="%{y} H%{x}: %{z:.4g}<extra></extra>",
            colorbar={"title": {"text": colorbar_title}},
        )
    )
    fig.update_layout(
        title=title,
        xaxis={
            "title": "head",
            "tickmode": "array",
            "tickvals": heads,
            "ticktext": [f"H{h}" for h in heads],
        },
        yaxis={"title": "layer", "autorange": "reversed"},
    )
    return fig
