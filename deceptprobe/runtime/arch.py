"""Where TransformerLens's hook points live in a Hugging Face model, per architecture.

TransformerLens names every activation of a transformer block the same way on every model
(``blocks.{i}.hook_resid_pre``, ``attn.hook_z``, ``hook_attn_out``, ``hook_mlp_out``,
``hook_resid_post``). A Hugging Face model has the same activations under its own module
names. :class:`Architecture` maps one to the other, so that an HF causal LM exposes the
TransformerLens names *with TransformerLens's meanings*:

============================  =====================================================  ===========
TransformerLens name          Hugging Face value                                     read at
============================  =====================================================  ===========
``blocks.{i}.hook_resid_pre``  hidden state entering block ``i``                     block input
``blocks.{i}.attn.hook_z``     per-head attention output before the output            out-proj
                               projection, ``[batch, pos, head, d_head]``             input
``blocks.{i}.hook_attn_out``   the attention sublayer's contribution                  attn output
``blocks.{i}.hook_mlp_out``    the MLP sublayer's contribution                        mlp output
``blocks.{i}.hook_resid_post`` hidden state leaving block ``i`` (the last block's     block output
                               is taken *before* the final norm, as TransformerLens)
``ln_final.hook_normalized``   the final norm's output (``hidden_states[-1]``)        final norm
============================  =====================================================  ===========

Exceptions, documented rather than hidden: in a BERT-style block (post-LayerNorm),
``hook_attn_out`` and ``hook_mlp_out`` are the dense projections' outputs before the residual
add and its LayerNorm, and ``hook_resid_post`` is after the block's second LayerNorm (as in
TransformerLens's ``HookedEncoder``). BERT has no final norm: there is no
``ln_final.hook_normalized``.

Adding an architecture is one :class:`Architecture` entry here (module paths relative to the
model and to a block) plus its loader class; nothing else in the package changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Module paths of one HF architecture family (dotted, relative to the model / a block)."""

    name: str
    """A short family name (``gpt2``, ``gpt_neox``, ``llama``, ``bert``)."""
    layers: str
    """The ``nn.ModuleList`` of blocks, relative to the model."""
    final_norm: str | None
    """The final norm applied after the last block (``None``: the architecture has none)."""
    attn: str
    """Module whose output (first element) is the attention contribution, relative to a block."""
    mlp: str
    """Module whose output is the MLP contribution, relative to a block."""
    o_proj: str
    """The attention output projection (its input is ``hook_z``), relative to a block."""
    embed: str
    """The token embedding, relative to the model."""
    loader: str = "AutoModelForCausalLM"
    """The ``transformers`` class that loads a checkpoint as a causal LM."""
    post_ln: bool = False
    """Post-LayerNorm blocks (BERT): see the module docstring."""


# model_type (config.json) -> architecture. Every entry is tested from a random-init config.
ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture(
        "gpt2", "transformer.h", "transformer.ln_f", "attn", "mlp", "attn.c_proj",
        "transformer.wte",
    ),
    "gpt_neox": Architecture(
        "gpt_neox", "gpt_neox.layers", "gpt_neox.final_layer_norm", "attention", "mlp",
        "attention.dense", "gpt_neox.embed_in",
    ),
    "bert": Architecture(
        "bert", "bert.encoder.layer", None, "attention.output.dense", "output.dense",
        "attention.output.dense", "bert.embeddings.word_embeddings", loader="BertLMHeadModel",
        post_ln=True,
    ),
}  # fmt: skip
for _llama_like in ("llama", "mistral", "qwen2", "qwen3", "gemma"):
    ARCHITECTURES[_llama_like] = Architecture(
        _llama_like, "model.layers", "model.norm", "self_attn", "mlp", "self_attn.o_proj",
        "model.embed_tokens",
    )  # fmt: skip


def supported() -> str:
    """The supported ``model_type`` values, for error messages."""
    return ", ".join(sorted(ARCHITECTURES))


def architecture_of(config: Any) -> Architecture:
    """The :class:`Architecture` of an HF config.

    Raises:
        ValueError: an architecture the runtime does not support (naming the supported ones).
    """
    model_type = getattr(config, "model_type", None)
    arch = ARCHITECTURES.get(str(model_type))
    if arch is None:
        raise ValueError(
            f"architecture {model_type!r} is not supported by the deceptprobe runtime; "
            f"supported model_type values: {supported()}"
        )
    return arch


def submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule(path)`` with a clear error naming the architecture entry."""
    try:
        return root.get_submodule(path)
    except AttributeError as e:
        raise ValueError(
            f"{type(root).__name__} has no submodule {path!r} ({e}); the runtime's "
            "architecture table does not match this model"
        ) from None
