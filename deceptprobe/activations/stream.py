"""Stream activations of many prompts into an :class:`ActivationStore`, resumably.

:func:`cache_to_store` runs :func:`~deceptprobe.activations.collect.iter_collect` batch by batch
and appends each batch to the store, whose background writer overlaps disk writes with the next
forward pass. Memory is bounded by one batch plus a few shards, whatever the number of prompts.

Resuming: the store's index records a hash of the tokenised prompts. Re-running the same call on
the same ``out`` continues at ``len(store)`` (rows are committed in order, so the committed rows
are always a prefix of the prompts); a different model, hook set, positions rule, dtype or
prompt list is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch

from deceptprobe.activations.collect import backend_for, iter_collect, model_identity
from deceptprobe.activations.hooks import HookSelection
from deceptprobe.activations.positions import Positions, describe, encode_inputs
from deceptprobe.activations.store import ActivationStore, StoreError

__all__ = ["cache_to_store"]


def _model_dtype(model: ModelLike) -> torch.dtype:
    module = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
    try:
        return next(module.parameters()).dtype
    except (StopIteration, AttributeError):
        return torch.float32


def cache_to_store(
    model: ModelLike,
    prompts: Any,
    *,
    hooks: HookSelection,
    positions: Positions = "last",
    out: str | os.PathLike[str],
    metadata: Sequence[dict[str, Any]] | None = None,
    batch_size: int = 64,
    resume: bool = True,
    progress: bool = True,
    dtype: torch.dtype | None = None,
    layers: Sequence[int] | None = None,
    tokenizer: Any = None,
    shard_rows: int = 1024,
    max_shard_bytes: int = 64 << 20,
    model_id: str | None = None,
    info: dict[str, Any] | None = None,
) -> ActivationStore:
    """Collect activations of ``prompts`` into the store at ``out`` (created or resumed).

    Args:
        model: as for :func:`~deceptprobe.activations.collect`.
        prompts: a list of strings, a token tensor or a mapping with ``input_ids``.
        hooks: hook selection (resolved to exact names before anything is written).
        positions: ``"last"``, ``"all"``, an int index or a bool mask ``[n_prompts, pos]``.
        out: the store directory.
        metadata: one dict per prompt (labels); each row also gets ``prompt_index`` and
            ``n_tokens`` unless the dict sets them.
        batch_size: prompts per forward pass.
        resume: continue a compatible store at ``out`` from ``len(store)``; ``False`` refuses
            an existing non-empty ``out``.
        progress: rich progress bar on stderr.
        dtype: stored dtype (default: the model's parameter dtype).
        layers, tokenizer: as for ``collect``.
        shard_rows, max_shard_bytes: shard size limits (see :meth:`ActivationStore.create`).
        model_id: identity string recorded in the store (default: ``model_identity(model)``).
        info: extra JSON facts to record in the index.

    Returns:
        The store, closed for writing (every row committed) and ready to read.

    Raises:
        StoreError: ``out`` holds an incompatible store, or more rows than there are prompts.
        ValueError: bad hooks, positions, metadata length, or prompts longer than the context.
    """
    if not isinstance(positions, (str, int)):
        raise ValueError(
            "cache_to_store keeps one row per prompt: positions must be 'last', 'all' or an int"
        )
    backend = backend_for(model, tokenizer)
    names = backend.resolve(hooks, layers)
    enc = encode_inputs(
        prompts,
        attention_mask=None,
        tokenize=backend.tokenize,
        pad_id=backend.pad_id,
        bos_id=getattr(backend, "bos_id", None),
    )
    n = len(enc)
    if metadata is not None and len(metadata) != n:
        raise ValueError(f"metadata has {len(metadata)} rows for {n} prompts")
    h = hashlib.sha256()
    h.update(enc.input_ids.numpy().tobytes())
    h.update(enc.attention_mask.numpy().tobytes())
    store_dtype = dtype or _model_dtype(model)
    facts = {"inputs_sha256": h.hexdigest(), "n_prompts": n, **(info or {})}
    store = ActivationStore.create(
        out,
        model_id=model_id or model_identity(model),
        hooks=names,
        positions=describe(positions),
        dtype=store_dtype,
        shard_rows=shard_rows,
        max_shard_bytes=max_shard_bytes,
        info=facts,
        resume=resume,
    )
    start = len(store)
    if start > n:
        store.close()
        raise StoreError(f"{out} holds {start} rows but there are only {n} prompts")
    lengths = enc.attention_mask.sum(1).tolist()
    inputs = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, **enc.extra}
    with store:
        for rows, acts in iter_collect(
            model,
            inputs,
            hooks=names,
            positions=positions,
            batch_size=batch_size,
            device="cpu",
            dtype=store_dtype,
            progress=progress,
            tokenizer=tokenizer,
            start=start,
        ):
            meta = []
            for i in rows:
                row = {"prompt_index": i, "n_tokens": int(lengths[i])}
                row.update(metadata[i] if metadata is not None else {})
                meta.append(row)
            store.append(acts, meta)
    return store
