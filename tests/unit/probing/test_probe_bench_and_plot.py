"""bench probes (quick) returns the DESIGN.md keys; the AUROC-by-layer figure."""

from __future__ import annotations

import plotly.graph_objects as go

from deceptprobe.bench.probes import run_benchmark
from deceptprobe.plots.probes import auroc_by_layer
from deceptprobe.probing import layer_sweep


def test_quick_benchmark_keys():
    out = run_benchmark(quick=True)
    assert set(out) == {"layers", "deceptprobe_s", "sklearn_s", "speedup", "max_auroc_diff"}
    assert out["layers"] == 4 and out["deceptprobe_s"] > 0
    assert out["speedup"] == out["sklearn_s"] / out["deceptprobe_s"]
    assert out["max_auroc_diff"] < 1e-2


def test_auroc_by_layer_figure():
    import torch

    X = torch.randn(3, 80, 4)
    y = torch.arange(80) % 2
    res = layer_sweep(X, y.numpy(), n_boot=20)
    fig = auroc_by_layer(res)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 2  # CI band + line
    multi = auroc_by_layer({"before": res, "after_sft": res.to_dict()}, title="t")
    assert len(multi.data) == 4
    assert [t.name for t in multi.data if t.mode == "lines+markers"] == ["before", "after_sft"]
    no_ci = auroc_by_layer({"x": {"layers": [0, 1], "auroc": [0.5, 0.9]}})
    assert len(no_ci.data) == 1
