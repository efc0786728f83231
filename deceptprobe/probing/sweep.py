"""Layer sweeps: one probe per layer, held-out AUROC with bootstrap CIs, all layers at once.

Where in the network is a concept linearly readable? The standard answer (Alain & Bengio 2016;
Marks & Tegmark 2023) trains the same probe on every layer's activations and compares held-out
AUROC. Here the layers are a batch dimension: one batched L-BFGS (logistic) or one batched mean
(mean difference) fits every layer, and one vectorised bootstrap gives every layer's 95% CI on
the same resamples. The split is by prompt template when ``groups`` is given
(:func:`deceptprobe.probing.splits.template_split`), otherwise stratified by row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import ArrayLike
from torch import Tensor

from deceptprobe.probing.metrics import auroc_ci
from deceptprobe.probing.solvers import fit_logistic_layers, fit_mean_diff_layers, matvec
from deceptprobe.probing.splits import stratified_split, template_split

__all__ = ["SweepResult", "layer_sweep"]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")
_LOGISTIC_KWARGS = {"C", "fit_intercept", "tol", "max_iter"}
_MEAN_DIFF_KWARGS = {"normalize"}


@dataclass(kw_only=True)
class SweepResult:
    """Per-layer held-out AUROC of one probe method (lists are in layer order)."""

    method: str
    """``"logistic"`` or ``"mean_diff"``."""
    hooks: list[str]
    """Hook name per entry (``"layer{i}"`` when a plain tensor was given)."""
    layers: list[int]
    """Layer index per entry (parsed from ``blocks.{i}.`` hook names, else the position)."""
    auroc: list[float]
    """Held-out AUROC per layer."""
    ci_lo: list[float]
    """Lower bound of the bootstrap CI per layer (``nan`` when ``n_boot=0``)."""
    ci_hi: list[float]
    """Upper bound of the bootstrap CI per layer (``nan`` when ``n_boot=0``)."""
    n_train: int
    """Rows in the training split."""
    n_test: int
    """Rows in the test split."""
    split: str
    """``"template"`` (grouped) or ``"stratified"`` (by row)."""
    best_layer: int
    """Layer with the highest held-out AUROC (first on ties)."""
    best_hook: str
    """Hook name of ``best_layer``."""
    seed: int
    """Seed of the split and the bootstrap."""
    n_boot: int
    """Bootstrap replicates."""
    alpha: float
    """One minus the CI coverage."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``nan`` becomes ``None``)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return {k: clean(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepResult:
        """Inverse of :meth:`to_dict` (``None`` bounds become ``nan``)."""
        kw = {f.name: data[f.name] for f in fields(cls)}
        for key in ("auroc", "ci_lo", "ci_hi"):
            kw[key] = [math.nan if v is None else float(v) for v in kw[key]]
        return cls(**kw)


def _layer_of(hook: str, position: int) -> int:
    m = _LAYER_RE.search(hook)
    return int(m.group(1)) if m else position


def _stack(acts: Mapping[str, Tensor]) -> tuple[Tensor, list[str]]:
    if not acts:
        raise ValueError("no activations given (empty mapping)")
    hooks = list(acts)
    tensors = [torch.as_tensor(acts[h]) for h in hooks]
    shapes = {tuple(t.shape) for t in tensors}
    if any(t.ndim != 2 for t in tensors):
        bad = next(h for h, t in zip(hooks, tensors, strict=True) if t.ndim != 2)
        raise ValueError(
            f"activations for {bad!r} have shape {tuple(acts[bad].shape)}; a sweep needs one "
            "vector per prompt ([batch, d_model]): cache with positions='last' or select a position"
        )
    if len(shapes) != 1:
        raise ValueError(
            f"all hooks must have the same [batch, d_model] shape to sweep together, got {sorted(shapes)}; "
            "sweep hooks of different widths separately"
        )
    return torch.stack(tensors), hooks


def _resolve(
    acts: Any, labels: Any, groups: Any
) -> tuple[Tensor, list[str], np.ndarray, np.ndarray | None]:
    """Turn a tensor / dict / ActivationStore into ([layer, batch, d_model], hooks, y, groups)."""
    store = None
    if hasattr(acts, "load") and hasattr(acts, "hooks"):
        store = acts
        X, hooks = _stack(store.load(hooks=None))
    elif isinstance(acts, Mapping):
        X, hooks = _stack(acts)
    else:
        X = torch.as_tensor(acts)
        if X.ndim != 3:
            raise ValueError(
                f"activations must be [layer, batch, d_model], a dict of [batch, d_model] per hook, "
                f"or an ActivationStore; got a tensor of shape {tuple(X.shape)}"
            )
        hooks = [f"layer{i}" for i in range(X.shape[0])]

    def from_store(key: str, what: str) -> np.ndarray:
        if store is None:
            raise ValueError(
                f"{what}={key!r} names a metadata key, which needs an ActivationStore; "
                f"pass an array of {what} instead"
            )
        if what == "labels" and hasattr(store, "labels"):
            try:
                vals = store.labels(key)
                return np.asarray(vals.cpu() if isinstance(vals, Tensor) else vals)
            except ValueError:
                pass  # e.g. string labels: read them from the metadata below
        meta = store.metadata
        missing = [i for i, m in enumerate(meta) if key not in m]
        if missing:
            raise ValueError(
                f"metadata key {key!r} is missing in {len(missing)} of {len(meta)} rows "
                f"(first: row {missing[0]}); available keys: {sorted(meta[0]) if meta else []}"
            )
        return np.asarray([m[key] for m in meta])

    y = from_store(labels, "labels") if isinstance(labels, str) else labels
    y = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
    g = from_store(groups, "groups") if isinstance(groups, str) else groups
    if g is not None:
        g = np.asarray(g.cpu() if isinstance(g, Tensor) else g)
    if y.ndim != 1 or len(y) != X.shape[1]:
        raise ValueError(f"labels must have one entry per row ({X.shape[1]}), got shape {y.shape}")
    if not torch.isfinite(X).all():
        raise ValueError(
            "activations contain NaN or inf; drop those rows (e.g. padding positions or an "
            "overflowed float16 cache) before sweeping"
        )
    return X, hooks, y, g


def layer_sweep(
    acts: Float[Tensor, "layer batch d_model"] | Mapping[str, Float[Tensor, "batch d_model"]] | Any,
    labels: ArrayLike | str,
    *,
    method: Literal["logistic", "mean_diff"] = "logistic",
    groups: ArrayLike | str | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    device: str | torch.device | None = None,
    layer_chunk: int | None = None,
    **probe_kwargs: Any,
) -> SweepResult:
    """Fit one probe per layer on a train split and report held-out AUROC with bootstrap CIs.

    Args:
        acts: ``[layer, batch, d_model]`` tensor; or a dict ``{hook_name: [batch, d_model]}``
            as returned by ``deceptprobe.activations.collect`` (in layer order); or an
            ``ActivationStore`` (anything with ``.hooks``, ``.load(hooks=None)``,
            ``.metadata`` and optionally ``.labels(key)``).
        labels: Two-class label per row, or (with a store) a metadata key. The positive class
            is ``np.unique(labels)[1]`` (``1`` / ``True``).
        method: ``"logistic"`` (:class:`~deceptprobe.probing.linear.LogisticProbe`'s objective)
            or ``"mean_diff"`` (difference of means, scored by projection).
        groups: Template id per row, or (with a store) a metadata key such as ``"template"``;
            given, the split keeps whole templates on one side. ``None``: stratified by row.
        test_size: Fraction of rows (approximately, when grouped) held out.
        seed: Seed of the split and the bootstrap.
        n_boot: Bootstrap replicates for the CI (``0``: no CI, bounds are ``nan``).
        alpha: One minus the CI coverage.
        device: Where to fit (default: the activations' device).
        layer_chunk: Fit at most this many layers at a time (bounds float64 memory).
        **probe_kwargs: For ``logistic``: ``C``, ``fit_intercept``, ``tol``, ``max_iter``
            (defaults as ``LogisticRegression()``, so unscaled real activations may need
            ``max_iter=1000`` to converge, as with scikit-learn); for ``mean_diff``:
            ``normalize``.

    Returns:
        A :class:`SweepResult`.
    """
    allowed = {"logistic": _LOGISTIC_KWARGS, "mean_diff": _MEAN_DIFF_KWARGS}.get(method)
    if allowed is None:
        raise ValueError(f"method must be 'logistic' or 'mean_diff', got {method!r}")
    unknown = set(probe_kwargs) - allowed
    if unknown:
        raise ValueError(
            f"unknown options for method={method!r}: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    X, hooks, y_raw, g = _resolve(acts, labels, groups)
    classes, y01 = np.unique(y_raw, return_inverse=True)
    if len(classes) != 2:
        raise ValueError(
            f"a sweep needs exactly two classes in labels, got {len(classes)} "
            f"({classes[:5].tolist()}); include both positives and negatives"
        )
    if g is None:
        train, test = stratified_split(y01, test_size=test_size, seed=seed)
        split = "stratified"
    else:
        train, test = template_split(y01, g, test_size=test_size, seed=seed)
        split = "template"
    dev = torch.device(device) if device is not None else X.device
    y_t = torch.as_tensor(y01, dtype=torch.float64, device=dev)
    tr = torch.as_tensor(train, device=dev)
    te = torch.as_tensor(test, device=dev)
    chunk = layer_chunk or X.shape[0]
    scores = []
    for start in range(0, X.shape[0], chunk):
        Xc = X[start : start + chunk].to(dev, torch.float64)
        Xtr, Xte = Xc[:, tr], Xc[:, te]
        if method == "logistic":
            fit = fit_logistic_layers(Xtr, y_t[tr], **probe_kwargs)
            s = matvec(Xte, fit.coef) + fit.intercept.unsqueeze(-1)
        else:
            mfit = fit_mean_diff_layers(Xtr, y_t[tr], **probe_kwargs)
            s = matvec(Xte, mfit.direction)
        scores.append(s.cpu())
    S = torch.cat(scores).numpy()
    point, lo, hi = auroc_ci(S, y01[test], n_boot=n_boot, seed=seed, alpha=alpha)
    layers = [_layer_of(h, i) for i, h in enumerate(hooks)]
    best = int(np.argmax(point))
    return SweepResult(
        method=method,
        hooks=hooks,
        layers=layers,
        auroc=[float(v) for v in point],
        ci_lo=[float(v) for v in lo],
        ci_hi=[float(v) for v in hi],
        n_train=len(train),
        n_test=len(test),
        split=split,
        best_layer=layers[best],
        best_hook=hooks[best],
        seed=seed,
        n_boot=n_boot,
        alpha=alpha,
    )
