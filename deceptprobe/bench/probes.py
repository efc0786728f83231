"""``deceptprobe bench probes``: all-layer probe sweep vs a loop of scikit-learn fits.

A synthetic sweep (default 12 layers x 2000 rows x 256 features, float32 activations, a planted
direction whose strength rises then falls with depth) is run two ways in the same process:

- deceptprobe: :func:`deceptprobe.probing.layer_sweep` (one batched float64 L-BFGS over all
  layers, scores and AUROC included, ``n_boot=0``);
- scikit-learn: per layer ``LogisticRegression()`` (same C, tolerance and iteration cap) on the
  same train split, then ``roc_auc_score`` on the same test split.

Times are medians of interleaved repeats after one warm-up of each; ``max_auroc_diff`` is the
largest absolute difference between the two per-layer held-out AUROCs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch


def _synthetic(n_layers: int, n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Gaussian activations with a class direction whose strength peaks at mid depth."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n_layers, n, d, generator=g)
    direction = torch.randn(d, generator=g)
    direction /= direction.norm()
    depth = torch.linspace(0, 1, n_layers)
    strength = 1.5 * torch.sin(torch.pi * depth) + 0.1  # weak at both ends, strong in the middle
    X += strength[:, None, None] * (2 * y - 1).float()[None, :, None] * direction
    return X, y.numpy()


def run_benchmark(quick: bool = False) -> dict[str, Any]:
    """Time the vectorised sweep against per-layer scikit-learn fits.

    Args:
        quick: Small problem and a single repeat (for tests).

    Returns:
        ``{"layers", "deceptprobe_s", "sklearn_s", "speedup", "max_auroc_diff"}`` with
        ``speedup = sklearn_s / deceptprobe_s``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from deceptprobe.probing.splits import stratified_split
    from deceptprobe.probing.sweep import layer_sweep

    n_layers, n, d, repeats = (4, 300, 32, 1) if quick else (12, 2000, 256, 5)
    X, y = _synthetic(n_layers, n, d)
    train, test = stratified_split(y, test_size=0.3, seed=0)
    X64 = X.double().numpy()

    def ours() -> list[float]:
        return layer_sweep(X, y, method="logistic", test_size=0.3, seed=0, n_boot=0).auroc

    def sklearn_loop() -> list[float]:
        out = []
        for layer in range(n_layers):
            clf = LogisticRegression().fit(X64[layer, train], y[train])
            out.append(float(roc_auc_score(y[test], clf.decision_function(X64[layer, test]))))
        return out

    a_ours, a_sk = ours(), sklearn_loop()  # warm-up, and the AUROCs compared
    t_ours: list[float] = []
    t_sk: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sklearn_loop()
        t_sk.append(time.perf_counter() - t0)
    ours_s, sk_s = statistics.median(t_ours), statistics.median(t_sk)
    return {
        "layers": n_layers,
        "deceptprobe_s": ours_s,
        "sklearn_s": sk_s,
        "speedup": sk_s / ours_s,
        "max_auroc_diff": float(np.max(np.abs(np.asarray(a_ours) - np.asarray(a_sk)))),
    }
