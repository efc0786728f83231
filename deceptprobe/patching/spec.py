"""What a patching sweep patches: activation kinds, their hooks, and validated inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

Kind = Literal["resid_pre", "resid_post", "attn_out", "mlp_out", "head", "head_all_pos"]
KINDS: tuple[str, ...] = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head", "head_all_pos")
HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "head": "blocks.{}.attn.hook_z",
    "head_all_pos": "blocks.{}.attn.hook_z",
}
TokensLike = Any  # Int[Tensor, "batch pos"] | Int[Tensor, " pos"] | a BatchEncoding


@dataclass(frozen=True)
class PatchSpec:
    """A validated sweep: what to patch, where, on which tokens."""

    model: ModelLike
    """A TransformerLens model or an :class:`~deceptprobe.runtime.hf.HFModel`."""
    clean: Int[Tensor, "batch pos"]
    corrupt: Int[Tensor, "batch pos"]
    kind: str
    layers: list[int]
    positions: list[int]
    heads: list[int]

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "head":
            return (len(self.layers), len(self.positions), len(self.heads))
        if self.kind == "head_all_pos":
            return (len(self.layers), len(self.heads))
        return (len(self.layers), len(self.positions))

    def indices(self) -> list[tuple[int, ...]]:
        """Patch indices in row-major order of the result."""
        if self.kind == "head":
            return [(lay, p, h) for lay in self.layers for p in self.positions for h in self.heads]
        if self.kind == "head_all_pos":
            return [(lay, h) for lay in self.layers for h in self.heads]
        return [(lay, p) for lay in self.layers for p in self.positions]


def unwrap_model(model: ModelLike) -> Any:
    """The TransformerLens model inside an :class:`~deceptprobe.organisms.model.Organism`.

    A Hugging Face model (or :class:`~deceptprobe.runtime.hf.HFModel`) comes back as an
    ``HFModel``, which runs hooked forward passes under TransformerLens names.
    """
    from deceptprobe.organisms.model import Organism
    from deceptprobe.runtime.hf import HFModel, wrap_hf

    if isinstance(model, Organism):
        return model.model
    if isinstance(model, HFModel):
        return model
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - a dependency
        return model
    return wrap_hf(model) if isinstance(model, PreTrainedModel) else model


@dataclass(frozen=True)
class Dims:
    """Shape facts of a patched model."""

    n_layers: int
    n_heads: int
    d_model: int
    d_vocab: int
    n_ctx: int
    d_mlp: int


def dims(model: ModelLike) -> Dims:
    """:class:`Dims` of a TransformerLens model (its ``cfg``) or an ``HFModel``."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        d_model = int(cfg.d_model)
        return Dims(int(cfg.n_layers), int(cfg.n_heads), d_model, int(cfg.d_vocab),
                    int(getattr(cfg, "n_ctx", 1 << 30)),
                    int(getattr(cfg, "d_mlp", 0) or 4 * d_model))  # fmt: skip
    return Dims(model.n_layers, model.n_heads, model.d_model, model.d_vocab, model.n_ctx,
                4 * model.d_model)  # fmt: skip


def as_token_tensor(tokens: TokensLike, device: torch.device) -> Int[Tensor, "batch pos"]:
    """A ``[batch, pos]`` long tensor from a tensor, a list of ids or a BatchEncoding.

    A padded BatchEncoding is refused: patching scores the final position of every row, which
    would be a pad token for the shorter prompts.
    """
    if hasattr(tokens, "input_ids"):
        mask = getattr(tokens, "attention_mask", None)
        if mask is not None and not bool(torch.as_tensor(mask).bool().all()):
            raise ValueError(
                "the batch is padded: patching scores each row's final position, so every prompt "
                "in a batch must have the same number of tokens; group prompts by length or "
                "patch them one at a time"
            )
        tokens = tokens.input_ids
    t = torch.as_tensor(tokens, dtype=torch.long)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"tokens must be [batch, pos] (or [pos]); got shape {tuple(t.shape)}")
    return t.to(device)


def model_device(model: ModelLike) -> torch.device:
    if hasattr(model, "tokens_device"):
        return model.tokens_device()
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _normalise_indices(given: Sequence[int] | None, size: int, what: str, extent: str) -> list[int]:
    if given is None:
        return list(range(size))
    out: list[int] = []
    for i in given:
        i = int(i)
        if not -size <= i < size:
            raise ValueError(
                f"{what} {i} is outside the {extent} ({size} {what}s: valid indices are "
                f"{-size}..{size - 1})"
            )
        out.append(i % size)
    if not out:
        raise ValueError(f"no {what}s to patch: pass None for all of them")
    return out


def make_spec(
    model: ModelLike,
    clean_tokens: TokensLike,
    corrupt_tokens: TokensLike,
    *,
    kind: str,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> PatchSpec:
    """Validate a sweep's inputs, with errors that say how to fix them."""
    if kind not in KINDS:
        raise ValueError(f"unknown activation kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    model = unwrap_model(model)
    device = model_device(model)
    clean = as_token_tensor(clean_tokens, device)
    corrupt = as_token_tensor(corrupt_tokens, device)
    if clean.shape[1] != corrupt.shape[1]:
        raise ValueError(
            f"clean and corrupt prompts must tokenize to the same length, got {clean.shape[1]} "
            f"and {corrupt.shape[1]} tokens: patching swaps activations position by position. "
            "Use length-matched prompts (as `deceptprobe organism prompts` writes) or reword "
            "the shorter one"
        )
    if clean.shape[0] != corrupt.shape[0]:
        raise ValueError(
            f"clean and corrupt batches must have the same size, got {clean.shape[0]} and "
            f"{corrupt.shape[0]} prompts (row i of each is one clean/corrupt pair)"
        )
    shape = dims(model)
    n_ctx = shape.n_ctx
    if clean.shape[1] > n_ctx:
        raise ValueError(f"prompts of {clean.shape[1]} tokens exceed the model's n_ctx={n_ctx}")
    if kind == "head_all_pos" and positions is not None:
        raise ValueError(
            "kind 'head_all_pos' patches every position; use kind 'head' for positions"
        )
    if kind not in ("head", "head_all_pos") and heads is not None:
        raise ValueError(f"heads only apply to kinds 'head' and 'head_all_pos', not {kind!r}")
    return PatchSpec(
        model=model,
        clean=clean,
        corrupt=corrupt,
        kind=kind,
        layers=_normalise_indices(layers, shape.n_layers, "layer", "model"),
        positions=_normalise_indices(positions, clean.shape[1], "position", "sequence"),
        heads=_normalise_indices(heads, shape.n_heads, "head", "layer"),
    )
