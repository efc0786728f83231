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
    prefix: bool = True,
) -> Float[Tensor, " n_patches"]:
    """Batched patching through the model's TransformerLens hooks (any TL model).

    On an HF model with ``logits_at="last"`` and ``prefix``, the prefix-reusing path runs.
    """
    from deceptprobe.runtime.hf import HFModel

    model = spec.model
    if isinstance(model, HFModel) and logits_at == "last" and prefix:
        return _hf_prefix_sweep(spec, metric, batch_size=batch_size)
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
    kind: str,
    local: list[tuple[int, tuple[int, ...]]],
    clean_act: Tensor,
    b: int,
    *,
    offset: int = 0,
) -> Callable[[Tensor, Any], Tensor]:
    """A forward hook writing the clean activation into each patched copy's rows.

    ``offset``: the activations (and ``clean_act``) start at this position of the prompt.
    """

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        for j, index in local:
            rows = slice(j * b, (j + 1) * b)
            if kind == "head":
                _, p, h = index
                act[rows, p - offset, h] = clean_act[:, p - offset, h]
            elif kind == "head_all_pos":
                _, h = index
                act[rows, :, h] = clean_act[:, :, h]
            else:
                _, p = index
                act[rows, p - offset] = clean_act[:, p - offset]
        return act

    return hook


def _start(spec: PatchSpec, index: tuple[int, ...]) -> int:
    """First position a patch changes (``head_all_pos`` changes every position)."""
    return 0 if spec.kind == "head_all_pos" else index[1]


@torch.no_grad()
def _hf_prefix_sweep(
    spec: PatchSpec, metric: Metric, *, batch_size: int | None
) -> Float[Tensor, " n_patches"]:
    """Patching an HF causal LM with its prefix reused and the unembedding at one position.

    A patch at position ``p`` changes nothing before ``p``: patches are grouped by ``p``, the
    corrupt prompt's keys and values of positions ``< p`` are computed once per group
    (``transformers``' own cache, so every architecture works), and the patched copies run
    positions ``p..T-1`` only, batched, with hooks writing the clean activation at ``p``.
    The logits are computed at the final position alone (``logits_to_keep=1``).
    """
    model = spec.model
    names = {HOOKS[spec.kind].format(layer) for layer in spec.layers}
    _, cache = model.run_with_cache(spec.clean, names_filter=lambda name: name in names)
    indices = spec.indices()
    b, seq = spec.clean.shape
    shape = dims(model)
    max_copies = batch_size or max(1, _ACT_BUDGET // (seq * 4 * shape.d_model))
    per_chunk = max(1, max_copies // b)
    out = torch.empty(len(indices), device=spec.clean.device)
    by_start: dict[int, list[int]] = {}
    for j, index in enumerate(indices):
        by_start.setdefault(_start(spec, index), []).append(j)
    for start, members in sorted(by_start.items()):
        for lo in range(0, len(members), per_chunk):
            chunk = members[lo : lo + per_chunk]
            hooks = []
            for layer in sorted({indices[j][0] for j in chunk}):
                name = HOOKS[spec.kind].format(layer)
                local = [(k, indices[j]) for k, j in enumerate(chunk) if indices[j][0] == layer]
                clean_act = cache[name][:, start:]
                hooks.append((name, _make_hook(spec.kind, local, clean_act, b, offset=start)))
            kv = model.prefix_cache(spec.corrupt[:, :start]) if start > 0 else None
            if kv is not None:
                _repeat_cache(kv, len(chunk))
            tokens = spec.corrupt.repeat(len(chunk), 1)
            logits = model.suffix_logits(tokens, start, kv, fwd_hooks=hooks)
            values = check_metric_output(metric(logits), tokens.shape[0])
            means = values.float().reshape(len(chunk), b).mean(dim=1)
            out[torch.tensor(chunk, device=out.device)] = means.to(out.device)
    return out


def _repeat_cache(kv: Any, n: int) -> None:
    """Tile a cache along the batch as ``tensor.repeat(n, ...)`` tiles the prompts."""
    for layer in kv.layers:
        if getattr(layer, "keys", None) is None:  # a slot the prefix run left empty
            continue
        layer.keys = layer.keys.repeat(n, *([1] * (layer.keys.dim() - 1)))
        layer.values = layer.values.repeat(n, *([1] * (layer.values.dim() - 1)))
