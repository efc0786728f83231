"""What every stage needs from "a model we can run", as one typed interface.

Two implementations: :class:`~deceptprobe.organisms.model.Organism` (our small
TransformerLens models with a word-level tokenizer) and :class:`~deceptprobe.runtime.hf.HFModel`
(any supported Hugging Face causal LM with its subword tokenizer). Stages take a
:data:`ModelRuntime`; they never test for a backend by duck typing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


@dataclass
class BatchEncoding:
    """Padded token ids and their attention mask (1 = real token).

    ``position_ids`` is set when some row is left-padded: each real token's position counts
    from its row's first real token, so a left-padded prompt sees the positions it would see
    alone.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    position_ids: Int[Tensor, "batch pos"] | None = None

    def __getitem__(self, key: str) -> Tensor:
        value = getattr(self, key)
        if value is None:
            raise KeyError(key)
        return value

    def keys(self) -> list[str]:
        out = ["input_ids", "attention_mask"]
        return out + (["position_ids"] if self.position_ids is not None else [])

    def to(self, device: torch.device | str) -> BatchEncoding:
        pos = None if self.position_ids is None else self.position_ids.to(device)
        return BatchEncoding(self.input_ids.to(device), self.attention_mask.to(device), pos)


def positions_from_mask(mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """Position ids that count real tokens only (left padding gets position 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@runtime_checkable
class ModelRuntime(Protocol):
    """A model every stage can run: tokenizer, hooked forward pass, generation, shape facts.

    Hook names and meanings are TransformerLens's on every backend (see
    :mod:`deceptprobe.runtime.arch` for where they live in a Hugging Face model).
    """

    name: str
    """A short human-readable name (the directory name)."""
    card: dict[str, Any]
    """Metrics, lineage and provenance (empty for a plain HF checkpoint)."""
    config: Any
    """The task config of an organism (``None`` or a family config for an HF checkpoint)."""

    @property
    def model(self) -> nn.Module:
        """The underlying torch module (a ``TransformerBridge`` or a ``PreTrainedModel``)."""
        ...

    @property
    def backend(self) -> str:
        """``"organism"`` or ``"hf"``."""
        ...

    @property
    def n_layers(self) -> int: ...

    @property
    def d_model(self) -> int: ...

    @property
    def n_heads(self) -> int: ...

    @property
    def d_vocab(self) -> int: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def to_tokens(self, texts: str | Sequence[str]) -> BatchEncoding:
        """Right-padded tokens (BOS first) on the model's device."""
        ...

    def to_str_tokens(self, text: str) -> list[str]:
        """The token strings of one text, BOS first."""
        ...

    def logits(self, texts: str | Sequence[str]) -> Float[Tensor, "batch d_vocab"]:
        """Next-token logits after the last real token of each text."""
        ...

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 32, batch_size: int = 256
    ) -> list[str]:
        """Greedy completions with a key/value cache (the text after each prompt)."""
        ...

    def hook_names(self) -> list[str]:
        """Every TransformerLens hook name this model exposes."""
        ...

    def fingerprint(self) -> str:
        """A short string naming the weights (changes when any weight changes)."""
        ...

    # -------------------------------------------------------------- training (safety, …)
    def forward_ids(self, ids: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Differentiable logits of right-padded ``ids``, without hooks.

        The models are causal, so padding after a token never changes that token's logits;
        no mask is needed.
        """
        ...

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of a prompt (BOS first) and of the answer that follows it (EOS last).

        Their concatenation is how the model reads the whole conversation.
        """
        ...

    def clone(self, *, fresh_seed: int | None = None) -> ModelRuntime:
        """A copy sharing no tensor with this one (a fresh initialisation from
        ``fresh_seed`` when given), with an empty card."""
        ...


def weights_fingerprint(module: nn.Module) -> str:
    """Names, shapes, dtypes and a strided sample of every parameter's values, hashed.

    Cheap (256 values per tensor) and changes when weights change; organisms use the full
    sha256 of their weights instead.
    """
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        t = p.detach().flatten()
        if t.device.type == "meta":
            h.update(f"{name}{tuple(p.shape)}{p.dtype}meta".encode())
            continue
        step = max(1, t.numel() // 256)
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(t[::step].to("cpu", torch.float64).numpy().tobytes())
    return f"{type(module).__name__}:{h.hexdigest()[:16]}"


ModelLike = ModelRuntime | nn.Module
"""What a public function that runs a model accepts: a :class:`ModelRuntime` (an organism or an
``HFModel``), or a bare model it wraps (a TransformerLens ``TransformerBridge`` /
``HookedRootModule``, a Hugging Face ``PreTrainedModel``)."""
