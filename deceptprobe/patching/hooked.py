"""Batched activation patching through a model's TransformerLens hooks (any TL model).

Patched copies of the corrupt prompts are stacked along the batch; one forward hook per layer
writes the clean activation into each copy's rows, so a chunk of patches costs one forward pass.
This is the general path of :func:`~deceptprobe.patching.patch.patch_sweep`, used for models
that are not bridges over TransformerLens's native transformer and for metrics that read the
logits at every position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.patching.metrics import Metric, check_metric_output
from deceptprobe.patching.spec import HOOKS, PatchSpec, dims

_ACT_BUDGET = 2**26  # floats of logits and activations per forward pass (about 256 MB)


@torch.no_grad()
def hook_sweep(
    spec: PatchSpec,
    metric: Metric,
    *,
    logits_at: Literal["last", "all"],
    batch_size: int | None,
) -> Float[Tensor, " n_patches"]:
    """Batched patching through the model's TransformerLens hooks (any TL model)."""
    model = spec.model
    names = {HOOKS[spec.kind].format(layer) for layer in spec.layers}
    _, cache = model.run_with_cache(spec.clean, names_filter=lambda name: name in names)
    indices = spec.indices()
    b, seq = spec.clean.shape
    shape = dims(model)
    per_row = seq * max(shape.d_vocab, 4 * shape.d_model)
    max_copies = batch_size or max(1, _ACT_BUDGET // per_row)
    per_chunk = max(1, max_copies // b)
    out = torch.empty(len(indices), device=spec.clean.device)
    for lo in range(0, len(indices), per_chunk):
        chunk = indices[lo : lo + per_chunk]
        hooks = []
        for layer in sorted({i[0] for i in chunk}):
            name = HOOKS[spec.kind].format(layer)
            local = [(j, i) for j, i in enumerate(chunk) if i[0] == layer]
            hooks.append((name, _make_hook(spec.kind, local, cache[name], b)))
        tokens = spec.corrupt.repeat(len(chunk), 1)
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        values = metric(logits[:, -1] if logits_at == "last" else logits)
        values = check_metric_output(values, tokens.shape[0])
        out[lo : lo + len(chunk)] = values.float().reshape(len(chunk), b).mean(dim=1)
    return out


def _make_hook(
    kind: str, local: list[tuple[int, tuple[int, ...]]], clean_act: Tensor, b: int
) -> Callable[[Tensor, Any], Tensor]:
    """A forward hook writing the clean activation into each patched copy's rows."""

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        for j, index in local:
            rows = slice(j * b, (j + 1) * b)
            if kind == "head":
                _, p, h = index
                act[rows, p, h] = clean_act[:, p, h]
            elif kind == "head_all_pos":
                _, h = index
                act[rows, :, h] = clean_act[:, :, h]
            else:
                _, p = index
                act[rows, p] = clean_act[:, p]
        return act

    return hook
