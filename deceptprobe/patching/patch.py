"""Activation patching, batched and restricted to what a patch can change.

Activation patching (Meng et al. 2022, "Locating and Editing Factual Associations in GPT",
called causal tracing there; Wang et al. 2022, "Interpretability in the Wild"; Zhang & Nanda
2024, "Towards Best Practices of Activation Patching") localises where a model computes a
behaviour. Run the model on two inputs that differ in one detail: the *clean* input, whose
behaviour we want to explain (here: the triggered prompt, on which a backdoored model defects),
and the *corrupt* input (the same prompt without the trigger, on which it answers helpfully).
Then run the corrupt input again, but replace one activation, say the residual stream entering
layer ``l`` at position ``p``, by its value in the clean run, and measure how far a metric of
the output (the logit difference between the defection answer and the helpful one) moves
towards its clean value. Sweeping over every layer and position gives a map of where the
information that makes the difference lives. This module follows TransformerLens's
``transformer_lens.patching`` semantics exactly: the result at an index is the metric of the
patched corrupt run, averaged over the batch.

TransformerLens runs one full forward pass per patched index. Two facts make most of that work
unnecessary:

1. Causality. A patch at layer ``l``, position ``p`` leaves every activation of earlier layers
   and every activation at earlier positions unchanged. So a patched run can start at layer
   ``l`` from the cached corrupt residual stream and compute positions ``>= p`` only, taking the
   keys and values of positions ``< p`` from the corrupt cache (:mod:`.runner`).
2. The metric reads the final position. In the last block only the final position's query,
   attention output and MLP are needed, and the unembedding (50k x 768 for GPT-2, more FLOPs
   than a block) is applied to one position instead of all of them.

Many patches are stacked along the batch dimension and run through each block together; patches
are bucketed by start position and ordered by start layer, so a whole sweep costs a few batched
block calls per layer. Results agree with TransformerLens to float32 rounding (tested, <= 1e-4).

Metrics take the final-position logits ``[batch, d_vocab]`` and return ``[batch]``
(:mod:`.metrics`). For a metric that needs the logits at every position pass
``logits_at="all"``: it then receives ``[batch, pos, d_vocab]``, and patches run through the
model's own hooks (still batched, but full forward passes). Models that are not bridges over
TransformerLens's native transformer (e.g. a Hugging Face model booted into a bridge) use the
same hook path.

Kinds (TransformerLens hook in brackets; result shape):

- ``resid_pre``  (``blocks.{l}.hook_resid_pre``): ``[layer, pos]``
- ``resid_post`` (``blocks.{l}.hook_resid_post``): ``[layer, pos]``
- ``attn_out``   (``blocks.{l}.hook_attn_out``): ``[layer, pos]``
- ``mlp_out``    (``blocks.{l}.hook_mlp_out``): ``[layer, pos]``
- ``head``       (``blocks.{l}.attn.hook_z``, one head at one position): ``[layer, pos, head]``
- ``head_all_pos`` (``blocks.{l}.attn.hook_z``, one head at every position): ``[layer, head]``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.patching.hooked import hook_sweep
from deceptprobe.patching.metrics import Metric, check_metric_output
from deceptprobe.patching.spec import (
    Kind,
    PatchSpec,
    TokensLike,
    as_token_tensor,
    make_spec,
    model_device,
    unwrap_model,
)
from deceptprobe.runtime.runner import RunCache, SuffixRunner, block_macs_per_token

_CALL_OVERHEAD_FLOPS = 1e7
_ACT_BUDGET = 2**26  # floats of activation per block call (about 256 MB)
_LOGIT_BUDGET = 2**25  # floats of logits per unembedding call


def patch_sweep(
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
    method: Literal["auto", "suffix", "hooks"] = "auto",
    batch_size: int | None = None,
) -> Float[Tensor, "layer ..."]:
    """Patch clean activations into the corrupt run, one index at a time, batched.

    Args:
        model: a TransformerLens model (a ``TransformerBridge``), an ``Organism``, or a Hugging
            Face causal LM (an ``HFModel`` or a bare ``PreTrainedModel``).
        clean_tokens: ``[batch, pos]`` (or ``[pos]``) tokens whose activations are patched in.
        corrupt_tokens: tokens of the run that is patched; same shape as ``clean_tokens``.
        kind: the activation to patch, one of :data:`KINDS` (see the module docstring).
        metric: final-position logits ``[batch, d_vocab]`` -> ``[batch]`` (with
            ``logits_at="all"``: ``[batch, pos, d_vocab]`` -> ``[batch]``).
        positions: positions to patch (negative counts from the end); default all.
        layers: layers to patch; default all.
        heads: heads to patch for the head kinds; default all.
        logits_at: whether the metric reads the final position only (fast) or all positions.
        method: ``"suffix"`` (re-run only what a patch changes: on native bridges from the
            patched layer and position on; on Hugging Face models from the patched position on,
            the prefix's keys and values from the model's own cache), ``"hooks"`` (batched full
            forward passes through the model's hooks), or ``"auto"`` (suffix where possible).
        batch_size: most patched prompt copies per batched call; default from a memory budget.
            The suffix path reads the model's weights directly, so hooks attached to the model
            do not run on it; pass ``method="hooks"`` to keep them.

    Returns:
        The batch-mean metric of each patched run: ``[layer, pos]``, ``[layer, pos, head]``
        (kind ``"head"``) or ``[layer, head]`` (kind ``"head_all_pos"``), indexed by the
        selected layers, positions and heads in the order given.
    """
    if logits_at not in ("last", "all"):
        raise ValueError(f"logits_at must be 'last' or 'all', got {logits_at!r}")
    if method not in ("auto", "suffix", "hooks"):
        raise ValueError(f"method must be 'auto', 'suffix' or 'hooks', got {method!r}")
    spec = make_spec(
        model,
        clean_tokens,
        corrupt_tokens,
        kind=kind,
        layers=layers,
        positions=positions,
        heads=heads,
    )
    from deceptprobe.runtime.hf import HFModel

    hf = isinstance(spec.model, HFModel)
    suffix_ok = (hf or SuffixRunner.supports(spec.model)) and logits_at == "last"
    if method == "suffix" and not suffix_ok:
        raise ValueError(
            "method='suffix' needs a TransformerBridge over TransformerLens's native model or a "
            "Hugging Face causal LM, and logits_at='last'; use method='hooks'"
        )
    if hf:
        flat = hook_sweep(
            spec, metric, logits_at=logits_at, batch_size=batch_size, prefix=method != "hooks"
        )
    elif method == "hooks" or not suffix_ok:
        flat = hook_sweep(spec, metric, logits_at=logits_at, batch_size=batch_size)
    else:
        flat = _suffix_sweep(spec, metric, batch_size=batch_size)
    return flat.reshape(spec.shape)


@torch.no_grad()
def metric_of_run(
    model: ModelLike,
    tokens: TokensLike,
    metric: Metric,
    *,
    logits_at: Literal["last", "all"] = "last",
) -> float:
    """The batch-mean metric of an unpatched run (the clean or corrupt baseline)."""
    model = unwrap_model(model)
    toks = as_token_tensor(tokens, model_device(model))
    logits = model(toks)
    values = metric(logits[:, -1] if logits_at == "last" else logits)
    return float(check_metric_output(values, toks.shape[0]).float().mean())


# --------------------------------------------------------------------------- suffix path


@dataclass
class _Entries:
    """Patched residual streams entering block ``layer[i]`` (``n_layers`` = final norm).

    Patch ``i`` differs from the corrupt run at positions ``start[i] .. start[i] + w - 1`` of
    that stream, where they hold ``rows[i]``; all other positions are the corrupt run's.
    """

    layer: list[int]
    start: list[int]
    rows: Float[Tensor, "n batch w d_model"]


def _entries_for_layer(
    spec: PatchSpec,
    runner: SuffixRunner,
    clean: RunCache,
    corrupt: RunCache,
    layer: int,
    sel: list[tuple[int, ...]],
) -> _Entries:
    """The patched streams of the patches ``sel`` (all at ``layer``), batched."""
    kind = spec.kind
    block = runner.blocks[layer]
    if kind in ("resid_pre", "resid_post"):
        target = layer if kind == "resid_pre" else layer + 1
        pos = torch.tensor([i[1] for i in sel], device=spec.clean.device)
        rows = clean.resid[target][:, pos].transpose(0, 1).unsqueeze(2)
        return _Entries([target] * len(sel), [i[1] for i in sel], rows)
    if kind in ("attn_out", "mlp_out"):
        pos = torch.tensor([i[1] for i in sel], device=spec.clean.device)
        if kind == "attn_out":
            post = block.finish(corrupt.resid[layer][:, pos], clean.attn_out[layer][:, pos])
        else:
            post = corrupt.resid_mid[layer][:, pos] + clean.mlp_out[layer][:, pos]
        return _Entries(
            [layer + 1] * len(sel), [i[1] for i in sel], post.transpose(0, 1).unsqueeze(2)
        )
    if kind == "head":
        pos = torch.tensor([i[1] for i in sel], device=spec.clean.device)
        head = torch.tensor([i[2] for i in sel], device=spec.clean.device)
        n = len(sel)
        z = corrupt.z[layer][:, pos].clone()  # [batch, n, head, d_head]
        z[:, torch.arange(n), head] = clean.z[layer][:, pos, head]
        post = block.finish(corrupt.resid[layer][:, pos], block.out(z))
        return _Entries([layer + 1] * n, [i[1] for i in sel], post.transpose(0, 1).unsqueeze(2))
    # head_all_pos: the patched head changes every position
    head = torch.tensor([i[1] for i in sel], device=spec.clean.device)
    n = len(sel)
    z = corrupt.z[layer].unsqueeze(0).repeat(n, 1, 1, 1, 1)  # [n, batch, pos, head, d_head]
    z[torch.arange(n), :, :, head] = clean.z[layer][:, :, head].permute(2, 0, 1, 3)
    b, t = z.shape[1], z.shape[2]
    flat = z.reshape(n * b, t, *z.shape[3:])
    resid = corrupt.resid[layer].repeat(n, 1, 1)
    post = block.finish(resid, block.out(flat)).reshape(n, b, t, -1)
    return _Entries([layer + 1] * n, [0] * n, post)


def _buckets(entries: _Entries, seq: int, n_layers: int, call_overhead: float) -> list[list[int]]:
    """Group start positions into contiguous buckets that minimise the estimated cost.

    A bucket starting at ``s`` runs every member on positions ``[s, T)``; more buckets waste
    less compute on unchanged positions but cost more block calls. The cost of a bucket is
    its token-blocks (members x active layers x width) plus ``call_overhead`` token-blocks per
    block call; an exact dynamic programme over the sorted distinct starts picks the split.
    """
    weight: dict[int, float] = {}
    for layer, start in zip(entries.layer, entries.start, strict=True):
        weight[start] = weight.get(start, 0.0) + max(n_layers - layer, 0) + 1
    distinct = sorted(weight)
    m = len(distinct)
    best = [0.0] + [float("inf")] * m
    cut = [0] * (m + 1)
    for j in range(1, m + 1):
        total = 0.0
        for i in range(j, 0, -1):  # bucket = distinct[i-1 .. j-1]
            total += weight[distinct[i - 1]]
            cost = best[i - 1] + total * (seq - distinct[i - 1]) + call_overhead * n_layers
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups: list[list[int]] = []
    j = m
    while j > 0:
        groups.append(distinct[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def _run_bucket(
    runner: SuffixRunner,
    corrupt: RunCache,
    entries: _Entries,
    members: list[int],
    bucket_start: int,
    metric: Metric,
) -> Float[Tensor, "n batch"]:
    """Metric of every patched run in one bucket, ``[len(members), batch]``."""
    n_layers = runner.n_layers
    batch = corrupt.resid[0].shape[0]
    order = sorted(members, key=lambda i: entries.layer[i])
    state: Tensor | None = None
    first = entries.layer[order[0]]
    for layer in range(first, n_layers + 1):
        entering = [i for i in order if entries.layer[i] == layer]
        if entering:
            new = _entering_state(corrupt, entries, entering, layer, bucket_start, batch)
            if layer == n_layers:
                new = new[:, -1:]
            state = new if state is None else torch.cat([state, new], dim=0)
        if layer < n_layers and state is not None:
            state = runner.block_suffix(
                layer,
                state,
                bucket_start,
                corrupt.k[layer],
                corrupt.v[layer],
                last_only=layer == n_layers - 1,
            )
    assert state is not None
    final = state[:, -1]
    values = []
    step = max(batch, (_LOGIT_BUDGET // max(1, runner.unembed.out_features)) // batch * batch)
    for lo in range(0, final.shape[0], step):
        chunk = final[lo : lo + step]
        values.append(check_metric_output(metric(runner.logits(chunk)), chunk.shape[0]))
    out = torch.cat(values).reshape(len(order), batch)
    where = {m: j for j, m in enumerate(members)}
    inverse = torch.empty_like(out)
    inverse[[where[i] for i in order]] = out
    return inverse


def _entering_state(
    corrupt: RunCache,
    entries: _Entries,
    idx: list[int],
    layer: int,
    bucket_start: int,
    batch: int,
) -> Float[Tensor, "rows suffix d_model"]:
    """Corrupt stream at ``layer`` from ``bucket_start``, with each patch's rows written in."""
    n = len(idx)
    base = corrupt.resid[layer][:, bucket_start:].unsqueeze(0).repeat(n, 1, 1, 1)
    rows = entries.rows[idx]  # [n, batch, w, d]
    width = rows.shape[2]
    if width == 1:
        offs = torch.tensor([entries.start[i] - bucket_start for i in idx], device=base.device)
        base[torch.arange(n, device=base.device), :, offs] = rows[:, :, 0]
    else:
        for j, i in enumerate(idx):
            lo = entries.start[i] - bucket_start
            base[j, :, lo : lo + width] = rows[j, :, : base.shape[2] - lo]
    return base.reshape(n * batch, base.shape[2], base.shape[3])


@torch.no_grad()
def _suffix_sweep(
    spec: PatchSpec, metric: Metric, *, batch_size: int | None
) -> Float[Tensor, " n_patches"]:
    runner = SuffixRunner(spec.model)
    both = runner.run(torch.cat([spec.clean, spec.corrupt]))
    b = spec.clean.shape[0]
    clean = _split_cache(both, slice(0, b))
    corrupt = _split_cache(both, slice(b, 2 * b))
    indices = spec.indices()
    seq = spec.clean.shape[1]
    cfg = spec.model.cfg
    width = max(int(getattr(cfg, "d_mlp", 0) or 0), 4 * int(cfg.d_model))
    max_copies = batch_size or max(1, _ACT_BUDGET // (seq * width))
    per_chunk = max(1, max_copies // b)
    # one block call costs about as much as this many token-blocks of compute (CPU estimate:
    # ~0.3 ms of Python and dispatch at ~30 GFLOP/s); divided by the batch it runs
    overhead = _CALL_OVERHEAD_FLOPS / (2 * block_macs_per_token(cfg)) / b
    out = torch.empty(len(indices), device=spec.clean.device)
    for lo in range(0, len(indices), per_chunk):
        chunk = indices[lo : lo + per_chunk]
        parts: list[_Entries] = []
        slot: list[int] = []  # entry k is patch chunk[slot[k]]
        for layer in sorted({i[0] for i in chunk}):
            here = [j for j, i in enumerate(chunk) if i[0] == layer]
            slot.extend(here)
            parts.append(
                _entries_for_layer(spec, runner, clean, corrupt, layer, [chunk[j] for j in here])
            )
        entries = _Entries(
            [x for p in parts for x in p.layer],
            [x for p in parts for x in p.start],
            torch.cat([p.rows for p in parts]),
        )
        for group in _buckets(entries, seq, runner.n_layers, overhead):
            in_group = set(group)
            members = [k for k, s in enumerate(entries.start) if s in in_group]
            values = _run_bucket(runner, corrupt, entries, members, min(group), metric)
            out[[lo + slot[k] for k in members]] = values.float().mean(dim=1)
    return out


def _split_cache(cache: RunCache, rows: slice) -> RunCache:
    return RunCache(
        resid=[x[rows] for x in cache.resid],
        resid_mid=[x[rows] for x in cache.resid_mid],
        attn_out=[x[rows] for x in cache.attn_out],
        mlp_out=[x[rows] for x in cache.mlp_out],
        z=[x[rows] for x in cache.z],
        k=[x[rows] for x in cache.k],
        v=[x[rows] for x in cache.v],
        logits_last=cache.logits_last[rows],
    )
