"""Which token positions of each prompt to keep, and how to read them out of a hook.

A batch of prompts of different lengths is padded, so "the last token" is a different column
for every row. We take it from the attention mask (1 = real token): the last real position is
``argmax(mask * arange(pos))``, which is right for right padding *and* for left padding. Without
a mask, padding is inferred from the pad id (``input_ids != pad_id``).

Selecting inside the hook, on the model's own device, is what keeps caching cheap: a
``[batch, d_model]`` slice is copied out and the ``[batch, pos, d_model]`` activation is freed by
the model as usual (compare TransformerLens' ``run_with_cache``, which keeps every full tensor;
TransformerLens issue 746).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

Positions = Literal["last", "all"] | int | Bool[Tensor, "batch pos"]

# Hooks whose position axis is not dim 1: attention patterns/scores are [batch, head, q, k];
# we select query positions.
_QUERY_DIM_SUFFIXES = ("hook_pattern", "hook_attn_scores")


def position_dim(hook_name: str) -> int:
    """The axis of a hook's activation that indexes (query) positions."""
    return 2 if hook_name.endswith(_QUERY_DIM_SUFFIXES) else 1


def describe(positions: Positions) -> str:
    """A short string for a positions rule (stored in an ActivationStore index)."""
    if isinstance(positions, str):
        return positions
    if isinstance(positions, int):
        return f"index:{positions}"
    return "mask"


@dataclass
class Encoded:
    """Token ids, their attention mask and any other per-row model inputs (HF ``token_type_ids``)."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, start: int, stop: int, *, trim_right: bool = False) -> Encoded:
        """Rows ``start:stop``; ``trim_right`` drops trailing columns that are padding in every row.

        Trimming right padding never changes a causal model's activations at real tokens, nor a
        bidirectional model's (those columns are masked out), and saves the compute on them.
        """
        ids, mask = self.input_ids[start:stop], self.attention_mask[start:stop]
        extra = {k: v[start:stop] for k, v in self.extra.items()}
        if trim_right:
            real = mask.bool().any(0).nonzero()
            end = int(real.max()) + 1 if real.numel() else ids.shape[1]
            if end < ids.shape[1]:
                ids, mask = ids[:, :end], mask[:, :end]
                extra = {
                    k: v[:, :end] if v.dim() >= 2 and v.shape[1] == self.input_ids.shape[1] else v
                    for k, v in extra.items()
                }
        return Encoded(ids, mask, extra)

    def to(self, device: torch.device | str) -> Encoded:
        return Encoded(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            {k: v.to(device) for k, v in self.extra.items()},
        )

    @property
    def left_padded(self) -> bool:
        """True when some row starts with padding."""
        return bool((self.attention_mask[:, 0] == 0).any())


def encode_inputs(
    inputs: Any,
    *,
    attention_mask: Tensor | None,
    tokenize: Any,
    pad_id: int | None,
    bos_id: int | None = None,
) -> Encoded:
    """Normalise the accepted input forms to an :class:`Encoded` batch on the CPU.

    Args:
        inputs: a list of strings, a ``[batch, pos]`` (or ``[pos]``) token tensor, or a mapping /
            ``BatchEncoding`` with ``input_ids`` (and usually ``attention_mask``).
        attention_mask: overrides any mask in ``inputs``.
        tokenize: ``texts -> (input_ids, attention_mask)``, or ``None`` when the model has no
            tokenizer (strings are then an error).
        pad_id: used to infer the mask when none is given (``None``: no padding).
        bos_id: when it equals ``pad_id`` (GPT-2's ``<|endoftext|>`` is both), the pad token
            just before a row's first other token is its BOS, a real token.

    Raises:
        ValueError: empty input, or a row with no real tokens.
        TypeError: an input form we do not accept.
    """
    extra: dict[str, Tensor] = {}
    mask: Tensor | None = None
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, Sequence) and not isinstance(inputs, Tensor):
        if len(inputs) == 0:
            raise ValueError("collect() got an empty list of inputs; pass at least one prompt")
        if not all(isinstance(t, str) for t in inputs):
            raise TypeError("a list input must hold strings (prompts); pass token ids as a tensor")
        if tokenize is None:
            raise ValueError(
                "string inputs need a tokenizer, and this model has none: pass token ids, or "
                "tokenizer=... (a Hugging Face tokenizer) for a Hugging Face model"
            )
        ids, mask = tokenize(list(inputs))
    elif isinstance(inputs, Tensor):
        ids = inputs
    elif isinstance(inputs, Mapping) or hasattr(inputs, "keys"):
        keys = list(inputs.keys())
        if "input_ids" not in keys:
            raise ValueError(f"a mapping input needs 'input_ids'; got keys {keys}")
        ids = torch.as_tensor(inputs["input_ids"])
        if "attention_mask" in keys and inputs["attention_mask"] is not None:
            mask = torch.as_tensor(inputs["attention_mask"])
        for k in keys:
            v = inputs[k]
            if k not in ("input_ids", "attention_mask") and isinstance(v, Tensor):
                extra[k] = v
    else:
        raise TypeError(
            f"collect() accepts a list of strings, a token tensor or a mapping with input_ids; "
            f"got {type(inputs).__name__}"
        )
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.dtype.is_floating_point:
        raise ValueError(
            f"input_ids must be an integer [batch, pos] tensor; got {tuple(ids.shape)}"
        )
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"collect() got empty input_ids of shape {tuple(ids.shape)}")
    if attention_mask is not None:
        mask = attention_mask
    if mask is None:
        mask = infer_mask(ids, pad_id, bos_id)
    mask = torch.as_tensor(mask).to(torch.long)
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    if mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}"
        )
    empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty[:10]} have no real tokens (attention mask all zero)")
    return Encoded(ids.cpu().long(), mask.cpu(), {k: v.cpu() for k, v in extra.items()})


def infer_mask(ids: Tensor, pad_id: int | None, bos_id: int | None) -> Tensor:
    """1 for real tokens: not ``pad_id``, except a BOS equal to the pad id before the text."""
    if pad_id is None:
        return torch.ones_like(ids)
    mask = (ids != pad_id).long()
    if bos_id is not None and bos_id == pad_id:
        has_text = mask.bool().any(1)
        first = mask.argmax(1)  # first non-pad column of each row
        rows = torch.nonzero(has_text & (first > 0)).flatten()
        mask[rows, first[rows] - 1] = 1
    return mask


@dataclass
class Selector:
    """Reads the requested positions of a batch out of an activation tensor."""

    kind: Literal["last", "all", "index", "mask"]
    last: Int[Tensor, " batch"] | None = None
    index: int = 0
    mask: Bool[Tensor, "batch pos"] | None = None

    @classmethod
    def build(cls, positions: Positions, enc: Encoded) -> Selector:
        """Validate ``positions`` against the (full) batch ``enc``.

        Raises:
            ValueError: an unknown rule, an index out of range, or a mask of the wrong shape.
        """
        n_pos = enc.input_ids.shape[1]
        if isinstance(positions, str):
            if positions == "all":
                return cls("all")
            if positions == "last":
                arange = torch.arange(n_pos)
                last = (enc.attention_mask.bool() * (arange + 1)).argmax(1)
                return cls("last", last=last)
            raise ValueError(
                f"positions must be 'last', 'all', an int or a bool mask; got {positions!r}"
            )
        if isinstance(positions, bool):
            raise TypeError(
                "positions=True/False is ambiguous; pass 'last', 'all', an int or a mask"
            )
        if isinstance(positions, int):
            if not -n_pos <= positions < n_pos:
                raise ValueError(f"position index {positions} out of range for {n_pos} positions")
            return cls("index", index=positions)
        if isinstance(positions, Tensor):
            if positions.dtype != torch.bool or tuple(positions.shape) != tuple(
                enc.input_ids.shape
            ):
                raise ValueError(
                    f"a positions mask must be a bool tensor of shape {tuple(enc.input_ids.shape)} "
                    f"(batch, pos); got {positions.dtype} {tuple(positions.shape)}"
                )
            return cls("mask", mask=positions.cpu())
        raise TypeError(f"unsupported positions {type(positions).__name__}")

    def rows(self, start: int, stop: int, device: torch.device) -> Selector:
        """The selector for rows ``start:stop``, its index tensors on ``device``."""
        last = self.last[start:stop].to(device) if self.last is not None else None
        mask = self.mask[start:stop].to(device) if self.mask is not None else None
        return Selector(self.kind, last=last, index=self.index, mask=mask)

    def __call__(self, act: Tensor, hook_name: str) -> Tensor:
        """Select positions of one hook's activation (``[batch, pos, ...]``-shaped)."""
        if self.kind == "all" or act.dim() < 2:
            return act
        dim = position_dim(hook_name)
        x = act.movedim(dim, 1) if dim != 1 else act
        if self.kind == "index":
            return x[:, self.index]
        if self.kind == "last":
            assert self.last is not None  # from the batch's own mask: always in range
            return x[torch.arange(x.shape[0], device=x.device), self.last]
        assert self.mask is not None
        return x[self.mask[:, : x.shape[1]]]
