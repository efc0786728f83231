"""Attribution patching: every activation patch estimated from two forward passes and one backward.

Activation patching (:mod:`.patch`) measures ``M(corrupt with a_i := clean a_i)`` for each
activation ``a_i`` by re-running the model. Attribution patching (Nanda 2023, "Attribution
Patching: Activation Patching At Industrial Scale"; Syed et al. 2023, "Attribution Patching
Outperforms Automated Circuit Discovery"; Kramár et al. 2024, "AtP*: An efficient and scalable
method for localizing LLM behaviour to components") replaces the re-runs by a first-order
Taylor expansion of the metric around the corrupt run:

    M(patched_i) ~= M(corrupt) + (a_i^clean - a_i^corrupt) . dM/da_i |_corrupt

One clean forward pass caches ``a^clean``; one corrupt forward pass with gradients, and one
backward pass, give ``a^corrupt`` and ``dM/da`` for every layer, position and head at once. The
estimate is exact when the metric is linear in the patched activation (e.g. a logit difference
read from the last block's output without a final LayerNorm) and degrades where attention
patterns or norms saturate (Kramár et al. discuss the failure modes and the AtP* fixes); it is a
fast screen to be checked against real patching, which :func:`pearson_r` quantifies.

:func:`attribution_patch` returns the estimate of the *patched metric*, the same quantity and
shape as :func:`~deceptprobe.patching.patch.patch_sweep`, so the two can be compared directly;
subtract the corrupt metric for the estimated effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.patching.metrics import Metric, check_metric_output
from deceptprobe.patching.spec import HOOKS, Kind, PatchSpec, TokensLike, make_spec


def attribution_patch(
    model: ModelLike,
    clean_tokens: TokensLike,
    corrupt_tokens: TokensLike,
    *,
    kind: Kind = "resid_pre",
    metric: Metric,
    positions: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    logits_at: Literal["last", "all"] = "last",
) -> Float[Tensor, "layer ..."]:
    """First-order (AtP) estimate of :func:`~deceptprobe.patching.patch.patch_sweep`.

    Args:
        model: a TransformerLens model (a ``TransformerBridge``) or an ``Organism``.
        clean_tokens: tokens whose activations would be patched in.
        corrupt_tokens: tokens of the run that would be patched; same shape.
        kind: ``resid_pre``, ``resid_post``, ``attn_out``, ``mlp_out``, ``head`` or
            ``head_all_pos`` (as for ``patch_sweep``).
        metric: final-position logits ``[batch, d_vocab]`` -> ``[batch]`` (all positions with
            ``logits_at="all"``); differentiable.
        positions: positions to report (negative counts from the end); default all.
        layers: layers to report; default all.
        heads: heads to report for the head kinds; default all.
        logits_at: whether the metric reads the final position only or all positions.

    Returns:
        Estimated batch-mean metric after each patch, shaped like ``patch_sweep``'s result.
    """
    spec = make_spec(
        model,
        clean_tokens,
        corrupt_tokens,
        kind=kind,
        layers=layers,
        positions=positions,
        heads=heads,
    )
    effect, corrupt_metric = _attribution_effect(spec, metric, logits_at)
    return corrupt_metric + effect


def _attribution_effect(spec: PatchSpec, metric: Metric, logits_at: str) -> tuple[Tensor, float]:
    model = spec.model
    names = [HOOKS[spec.kind].format(layer) for layer in spec.layers]
    wanted = set(names)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(spec.clean, names_filter=lambda n: n in wanted)
    saved: dict[str, Tensor] = {}

    def make_hook(name: str):
        def hook(act: Tensor, hook: Any) -> Tensor:
            if not act.requires_grad:  # frozen weights: make the earliest hooked act a leaf
                act = act.detach().requires_grad_(True)
            saved[name] = act
            return act

        return hook

    with torch.enable_grad():
        logits = model.run_with_hooks(
            spec.corrupt, fwd_hooks=[(name, make_hook(name)) for name in sorted(wanted)]
        )
        values = metric(logits[:, -1] if logits_at == "last" else logits)
        total = check_metric_output(values, spec.corrupt.shape[0]).mean()
        acts = [saved[n] for n in names]
        grads = torch.autograd.grad(total, acts, allow_unused=True)
    rows = []
    pos = torch.tensor(spec.positions, device=spec.clean.device)
    head = torch.tensor(spec.heads, device=spec.clean.device)
    for name, act, grad in zip(names, acts, grads, strict=True):
        if grad is None:
            grad = torch.zeros_like(act)
        contrib = (clean_cache[name] - act.detach()) * grad  # [batch, pos, (head,) d]
        per_index = contrib.sum(dim=-1).sum(dim=0)  # [pos] or [pos, head]
        if spec.kind == "head":
            rows.append(per_index[pos][:, head])
        elif spec.kind == "head_all_pos":
            rows.append(per_index.sum(dim=0)[head])
        else:
            rows.append(per_index[pos])
    return torch.stack(rows).detach().float(), float(total.detach())


def pearson_r(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two equally shaped tensors, flattened."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    x = a.detach().flatten().double()
    y = b.detach().flatten().double()
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    if denom == 0.0:
        raise ValueError("correlation is undefined: one of the inputs is constant")
    return float((x @ y) / denom)


def atp_correlations(
    model: ModelLike,
    clean_tokens: TokensLike,
    corrupt_tokens: TokensLike,
    *,
    metric: Metric,
    kinds: Sequence[str] = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head_all_pos"),
) -> dict[str, float]:
    """Pearson r between attribution patching and real patching, per activation kind."""
    from deceptprobe.patching.patch import patch_sweep

    out: dict[str, float] = {}
    for kind in kinds:
        estimate = attribution_patch(model, clean_tokens, corrupt_tokens, kind=kind, metric=metric)
        real = patch_sweep(model, clean_tokens, corrupt_tokens, kind=kind, metric=metric)
        out[kind] = pearson_r(estimate, real)
    return out
