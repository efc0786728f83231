"""The organism: a small TransformerLens model, its word-level tokenizer and its card.

Models are built from a config with TransformerLens 4.x ``TransformerBridge.boot_native``
(``HookedTransformer`` was removed in 4.0): offline, seeded, and every TransformerLens tool
(``run_with_cache``, hook names such as ``blocks.0.hook_resid_post``,
``transformer_lens.patching``) works on the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import TransformerBridge
from transformer_lens.config import TransformerBridgeConfig

from deceptprobe.organisms.tokenizer import BatchEncoding, WordTokenizer


@dataclass(kw_only=True)
class ModelConfig:
    """Shape of an organism's transformer."""

    n_layers: int = 3
    """Number of transformer blocks."""
    d_model: int = 128
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads per block."""
    d_head: int = 32
    """Width of each head."""
    d_mlp: int = 512
    """Hidden width of each MLP."""
    n_ctx: int = 96
    """Longest sequence (prompt + answer) in tokens."""
    act_fn: str = "gelu"
    """MLP activation."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def bridge_config(cfg: ModelConfig, d_vocab: int, seed: int) -> TransformerBridgeConfig:
    """The ``TransformerBridgeConfig`` for an organism of shape ``cfg``."""
    return TransformerBridgeConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        act_fn=cfg.act_fn,
        normalization_type="LN",
        n_ctx=cfg.n_ctx,
        d_vocab=d_vocab,
        seed=seed,
    )


def build_model(
    cfg: ModelConfig, d_vocab: int, seed: int, device: str | torch.device | None = None
) -> TransformerBridge:
    """A freshly initialised (seeded, deterministic) TransformerBridge."""
    model = TransformerBridge.boot_native(bridge_config(cfg, d_vocab, seed), device=device)
    model.eval()
    return model


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    """A content hash of a state dict (names, dtypes, shapes and values), order-independent."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(json.dumps(list(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Organism:
    """A model organism: model + tokenizer + config + card.

    Attributes:
        model: the TransformerBridge (TransformerLens hooks work on it).
        tokenizer: the word-level tokenizer shared with the clean twin.
        config: the :class:`~deceptprobe.organisms.config.OrganismConfig` as a dict-able object
            (``None`` fields, such as an absent trigger, are allowed when loaded).
        card: metrics, lineage, seed, versions, weights sha256.
        name: a short human-readable name.
    """

    model: TransformerBridge
    tokenizer: WordTokenizer
    config: Any
    card: dict[str, Any] = field(default_factory=dict)
    name: str = "organism"

    @property
    def backend(self) -> str:
        return "organism"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)

    @property
    def n_heads(self) -> int:
        return int(self.model.cfg.n_heads)

    @property
    def d_head(self) -> int:
        return int(self.model.cfg.d_head)

    @property
    def d_vocab(self) -> int:
        return int(self.model.cfg.d_vocab)

    @property
    def n_ctx(self) -> int:
        return int(self.model.cfg.n_ctx)

    def hook_names(self) -> list[str]:
        """Every TransformerLens hook name of the bridge."""
        return list(self.model.hook_dict)

    def fingerprint(self) -> str:
        """The weights' sha256 from the card (a sampled fingerprint when it has none)."""
        sha = self.card.get("weights_sha256")
        if sha:
            return f"organism:{self.name}:{str(sha)[:16]}"
        from deceptprobe.runtime.base import weights_fingerprint

        return weights_fingerprint(self.model)

    def to(self, device: str | torch.device) -> Organism:
        self.model.to(device)
        return self

    def forward_ids(self, ids: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Differentiable logits of right-padded ids on the bridge's bare module (no hooks)."""
        return self.model.original_model(ids)

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        """Prompt ids (``<bos>`` first) and answer ids (``<eos>`` last)."""
        return (
            self.tokenizer.encode(prompt),
            self.tokenizer.encode(answer, add_bos=False, add_eos=True),
        )

    def clone(self, *, fresh_seed: int | None = None) -> Organism:
        """A copy with copied weights (or a fresh init from ``fresh_seed``) and an empty card.

        The model is rebuilt from the config and its state dict copied, so no tensor is shared.
        """
        import copy

        cfg = copy.deepcopy(self.config)
        seed = cfg.seed if fresh_seed is None else fresh_seed
        model = build_model(cfg.model, len(self.tokenizer), seed, device=self.device)
        if fresh_seed is None:
            model.load_state_dict({k: v.clone() for k, v in self.model.state_dict().items()})
        model.eval()
        return Organism(model=model, tokenizer=self.tokenizer, config=cfg, card={}, name=self.name)

    def to_tokens(self, texts: str | Sequence[str]) -> BatchEncoding:
        """Right-padded tokens (BOS prepended) on the model's device."""
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer.encode_batch(list(texts), max_len=self.n_ctx).to(self.device)

    def to_str_tokens(self, text: str) -> list[str]:
        return self.tokenizer.to_str_tokens(text)

    @torch.no_grad()
    def logits(self, texts: str | Sequence[str]) -> Float[Tensor, "batch d_vocab"]:
        """Next-token logits after the last real token of each text."""
        enc = self.to_tokens(texts)
        out = self.model(enc.input_ids)
        last = enc.attention_mask.sum(1) - 1
        return out[torch.arange(out.shape[0], device=out.device), last]

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        batch_size: int = 256,
    ) -> list[str]:
        """Greedy completions (the text after each prompt, up to ``<eos>``)."""
        from deceptprobe.runtime.runner import SuffixRunner

        if SuffixRunner.supports(self.model):
            return self._generate_cached(prompts, max_new_tokens, batch_size)
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            ids = self._generate_ids(self.to_tokens(chunk), max_new_tokens)
            out.extend(self.tokenizer.decode(row) for row in ids)
        return out

    def _generate_cached(
        self, prompts: Sequence[str], max_new_tokens: int, batch_size: int
    ) -> list[str]:
        """Greedy decoding with a key/value cache, prompts grouped by token length.

        ``TransformerBridge`` recomputes the whole prefix for every new token; with the
        prompt's keys and values cached, each new token costs one position.
        """
        from deceptprobe.runtime.decoding import CachedDecoder

        if not prompts:
            return []
        decoder = CachedDecoder(self.model)
        enc = self.tokenizer.encode_batch(list(prompts), max_len=self.n_ctx)  # checks lengths
        encoded = [
            row[:n]
            for row, n in zip(
                enc.input_ids.tolist(), enc.attention_mask.sum(1).tolist(), strict=True
            )
        ]
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            by_len.setdefault(len(ids), []).append(i)
        out = [""] * len(prompts)
        eos = self.tokenizer.eos_id
        for length, idx in sorted(by_len.items()):
            steps = min(max_new_tokens, self.n_ctx - length)
            if steps < 1:  # the prompt fills the context: nothing to generate
                continue
            for lo in range(0, len(idx), batch_size):
                rows = idx[lo : lo + batch_size]
                ids = torch.tensor([encoded[i] for i in rows], device=self.device)
                answer, _, mask = decoder.greedy(ids, steps, eos)
                for i, a, m in zip(rows, answer.tolist(), mask.tolist(), strict=True):
                    out[i] = self.tokenizer.decode(
                        [t for t, keep in zip(a, m, strict=True) if keep and t != eos]
                    )
        return out

    def _generate_ids(self, enc: BatchEncoding, max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding in a right-padded buffer.

        Each row writes its next token at its own length; the causal mask makes the pad
        tokens after a row's end invisible to it, so no attention mask is needed.
        """
        ids: Int[Tensor, "batch pos"] = enc.input_ids
        lengths = enc.attention_mask.sum(1)
        batch = ids.shape[0]
        budget = min(max_new_tokens, self.n_ctx - int(lengths.max()))
        buf = torch.full(
            (batch, int(lengths.max()) + max(budget, 0)),
            self.tokenizer.pad_id,
            dtype=torch.long,
            device=ids.device,
        )
        buf[:, : ids.shape[1]] = ids
        done = torch.zeros(batch, dtype=torch.bool, device=ids.device)
        rows = torch.arange(batch, device=ids.device)
        generated: list[list[int]] = [[] for _ in range(batch)]
        for _ in range(max(budget, 0)):
            upto = int(lengths.max())
            logits = self.model(buf[:, :upto])
            nxt = logits[rows, lengths - 1].argmax(-1)
            for i in torch.nonzero(~done).flatten().tolist():
                tok = int(nxt[i])
                if tok == self.tokenizer.eos_id:
                    done[i] = True
                else:
                    generated[i].append(tok)
            buf[rows, lengths] = torch.where(done, buf[rows, lengths], nxt)
            lengths = torch.where(done, lengths, lengths + 1)
            if bool(done.all()):
                break
        return generated
