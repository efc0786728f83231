"""layer_sweep on a tensor, a collect()-style dict and an ActivationStore; the CLI command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from deceptprobe.probing import layer_sweep
from deceptprobe.probing.splits import template_split

N_LAYERS, N, D = 4, 240, 16


def planted(seed=0):
    """Class signal grows with depth; templates hold both classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (N,), generator=g)
    X = torch.randn(N_LAYERS, N, D, generator=g)
    X[:, :, 0] += torch.arange(N_LAYERS)[:, None] * 0.8 * (2 * y - 1)
    groups = np.arange(N) // 8
    return X, y.numpy(), groups


class FakeStore:
    """Duck-typed ActivationStore: hooks, load(), labels(), metadata."""

    def __init__(self, X, y, groups):
        self.hooks = [f"blocks.{i}.hook_resid_post" for i in range(X.shape[0])]
        self._acts = {h: X[i] for i, h in enumerate(self.hooks)}
        self.metadata = [
            {"triggered": bool(v), "kind": "triggered" if v else "clean", "template": f"t{g}"}
            for v, g in zip(y, groups, strict=True)
        ]

    def load(self, hooks=None):
        return dict(self._acts)

    def labels(self, key):
        vals = [m[key] for m in self.metadata]
        if not all(isinstance(v, bool | int | float) for v in vals):
            raise ValueError(f"label {key!r} is not numeric")
        return torch.tensor([int(v) for v in vals])


def test_tensor_sweep_matches_sklearn_per_layer():
    X, y, groups = planted()
    res = layer_sweep(X, y, groups=groups, n_boot=200, seed=0)
    train, test = template_split(y, groups, test_size=0.3, seed=0)
    assert (res.n_train, res.n_test, res.split) == (len(train), len(test), "template")
    for layer in range(N_LAYERS):
        Xl = X[layer].double().numpy()
        clf = LogisticRegression().fit(Xl[train], y[train])
        ref = roc_auc_score(y[test], clf.decision_function(Xl[test]))
        assert res.auroc[layer] == pytest.approx(ref, abs=2e-3)
        assert res.ci_lo[layer] <= res.auroc[layer] <= res.ci_hi[layer]
    assert res.auroc[-1] > 0.95 and res.auroc[0] < 0.75
    assert res.best_layer == N_LAYERS - 1 and res.layers == list(range(N_LAYERS))
    d = res.to_dict()
    assert json.loads(json.dumps(d)) == d


def test_dict_input_mean_diff_and_chunks():
    X, y, _ = planted(1)
    acts = {f"blocks.{i}.hook_resid_post": X[i] for i in range(N_LAYERS)}
    res = layer_sweep(acts, y, method="mean_diff", n_boot=0)
    assert res.hooks == list(acts) and res.best_hook == f"blocks.{N_LAYERS - 1}.hook_resid_post"
    assert res.split == "stratified" and all(math.isnan(v) for v in res.ci_lo)
    assert res.to_dict()["ci_lo"] == [None] * N_LAYERS
    back = type(res).from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.auroc == res.auroc and math.isnan(back.ci_hi[0]) and back.hooks == res.hooks
    chunked = layer_sweep(acts, y, n_boot=0, layer_chunk=3)
    whole = layer_sweep(acts, y, n_boot=0)
    np.testing.assert_allclose(chunked.auroc, whole.auroc, atol=1e-9)
    strong = layer_sweep(X, y, n_boot=0, C=0.01)
    assert strong.auroc != whole.auroc


def test_store_input_with_metadata_keys():
    X, y, groups = planted(2)
    store = FakeStore(X, y, groups)
    res = layer_sweep(store, "triggered", groups="template", n_boot=50)
    ref = layer_sweep(X, y, groups=np.array([f"t{g}" for g in groups]), n_boot=50)
    np.testing.assert_allclose(res.auroc, ref.auroc)
    by_string = layer_sweep(store, "kind", groups="template", n_boot=50)  # "triggered" > "clean"
    np.testing.assert_allclose(by_string.auroc, ref.auroc)


def test_sweep_bad_inputs():
    X, y, groups = planted()
    with pytest.raises(ValueError, match="two classes"):
        layer_sweep(X, np.zeros(N))
    with pytest.raises(ValueError, match="one entry per row"):
        layer_sweep(X, y[:-1])
    with pytest.raises(ValueError, match="needs an ActivationStore"):
        layer_sweep(X, "triggered")
    with pytest.raises(ValueError, match="positions='last'"):
        layer_sweep({"blocks.0.hook_resid_post": torch.zeros(N, 3, D)}, y)
    with pytest.raises(ValueError, match="unknown options"):
        layer_sweep(X, y, method="mean_diff", C=1.0)
    with pytest.raises(ValueError, match="method"):
        layer_sweep(X, y, method="svm")
    Xn = X.clone()
    Xn[1, 5, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        layer_sweep(Xn, y)
    with pytest.raises(ValueError, match="missing"):
        layer_sweep(FakeStore(X, y, groups), "triggered", groups="no_such_key")


def test_cli_probe_sweep(tmp_path):
    store_mod = pytest.importorskip("deceptprobe.activations.store")
    from deceptprobe.cli import app

    X, y, groups = planted(3)
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(N_LAYERS)]
    path = tmp_path / "store"
    with store_mod.ActivationStore.create(
        path, model_id="test", hooks=hooks, positions="last", dtype=torch.float32
    ) as store:
        store.append(
            {h: X[i] for i, h in enumerate(hooks)},
            [{"triggered": int(v), "template": int(g)} for v, g in zip(y, groups, strict=True)],
        )
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "probe",
            "sweep",
            str(path),
            "--labels",
            "triggered",
            "--groups",
            "template",
            "--n-boot",
            "50",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["hooks"] == hooks and len(result["auroc"]) == N_LAYERS
    assert result["best_layer"] == N_LAYERS - 1
    table = runner.invoke(app, ["probe", "sweep", str(path), "--labels", "triggered"])
    assert table.exit_code == 0 and table.stdout == ""
    bad = runner.invoke(app, ["probe", "sweep", str(path), "--labels", "nope", "--json"])
    assert bad.exit_code == 2 and "nope" in bad.output
    bad_method = runner.invoke(
        app, ["probe", "sweep", str(path), "--labels", "x", "--method", "svm"]
    )
    assert bad_method.exit_code == 2
