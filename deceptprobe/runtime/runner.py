"""Re-run the tail of a native TransformerBridge from any layer and position.

A patch at layer ``l``, position ``p`` of a causal transformer leaves every activation of layers
``< l`` and every activation at positions ``< p`` unchanged. :class:`SuffixRunner` exploits
this: it reads the weights of a ``TransformerBridge.boot_native`` model (the modules wrapped by
the bridge, not copies) and executes a block on the *suffix* positions ``[s, T)`` of many
patched copies at once, taking the keys and values of the prefix ``[0, s)`` from the cached
corrupt run. In the last block only the final position's query, attention output and MLP are
computed, and the unembedding is applied at the final position only.

The arithmetic mirrors ``transformer_lens.model_bridge.sources.native.model`` operation for
operation (LayerNorm / RMSNorm, split-QKV attention with optional rotary embeddings, GQA and
score soft-capping, plain or gated MLPs), so the results agree with the bridge's own forward
pass to float32 rounding; the tests check this against ``model(tokens)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.utilities.activation_functions import apply_softcap

Module = Callable[[Tensor], Tensor]


def raw(module: nn.Module) -> nn.Module:
    """The plain torch module a bridge component wraps (the module itself if none)."""
    inner = getattr(module, "original_component", None)
    return module if inner is None else inner


def block_macs_per_token(cfg: Any) -> int:
    """Multiply-accumulates of one block's weight matrices for one token (no attention)."""
    d_model, d_attn = int(cfg.d_model), int(cfg.n_heads) * int(cfg.d_head)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
    attn = d_model * d_attn * 2 + 2 * d_model * n_kv * int(cfg.d_head)
    if getattr(cfg, "attn_only", False):
        return attn
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
    return attn + d_model * d_mlp * (3 if getattr(cfg, "gated_mlp", False) else 2)


@dataclass
class RunCache:
    """The activations of one full run that suffix re-runs and patches need.

    ``resid[l]`` is the residual stream entering block ``l`` (``resid[n_layers]`` enters the
    final norm); keys and values are per block, after rotary embedding and before GQA repeat.
    """

    resid: list[Float[Tensor, "batch pos d_model"]]
    resid_mid: list[Float[Tensor, "batch pos d_model"]]
    attn_out: list[Float[Tensor, "batch pos d_model"]]
    mlp_out: list[Float[Tensor, "batch pos d_model"]]
    z: list[Float[Tensor, "batch pos head d_head"]]
    k: list[Float[Tensor, "batch kv_head pos d_head"]]
    v: list[Float[Tensor, "batch kv_head pos d_head"]]
    logits_last: Float[Tensor, "batch d_vocab"]


def _functional_mlp(bridge_mlp: nn.Module) -> Module:
    """The native MLP as a function of raw linears (no bridge hooks on the way)."""
    native = raw(bridge_mlp)
    act: Module = native.act
    w_in: Module = raw(getattr(bridge_mlp, "in"))
    w_out: Module = raw(bridge_mlp.out)
    if hasattr(bridge_mlp, "gate"):
        gate: Module = raw(bridge_mlp.gate)
        return lambda x: w_out(act(gate(x)) * w_in(x))
    mid_ln = getattr(bridge_mlp, "ln", None)
    if mid_ln is not None:
        ln: Module = raw(mid_ln)
        return lambda x: w_out(ln(act(w_in(x))))
    return lambda x: w_out(act(w_in(x)))


class _Block:
    """The weights and shape of one native block, called functionally."""

    def __init__(self, bridge_block: nn.Module) -> None:
        attn = raw(bridge_block.attn)
        self.ln1: Module = raw(bridge_block.ln1)
        self.q: nn.Linear = raw(bridge_block.attn.q)  # type: ignore[assignment]
        self.k: nn.Linear = raw(bridge_block.attn.k)  # type: ignore[assignment]
        self.v: nn.Linear = raw(bridge_block.attn.v)  # type: ignore[assignment]
        self.o: nn.Linear = raw(bridge_block.attn.o)  # type: ignore[assignment]
        self.n_heads: int = attn.n_heads
        self.n_kv_heads: int = attn.n_kv_heads
        self.kv_repeats: int = attn.kv_repeats
        self.d_head: int = attn.d_head
        self.scale: float = attn.scale
        self.rotary = attn.rotary
        self.soft_cap: float = attn.attn_scores_soft_cap
        self.has_mlp = hasattr(bridge_block, "mlp")
        if self.has_mlp:
            self.ln2: Module = raw(bridge_block.ln2)
            self.mlp: Module = _functional_mlp(bridge_block.mlp)

    def qkv(
        self, x: Float[Tensor, "batch pos d_model"], positions: Int[Tensor, " pos"]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values ``[batch, head, pos, d_head]`` (rotary applied)."""
        b, t, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(h).view(b, t, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = self.v(h).view(b, t, self.n_kv_heads, self.d_head).transpose(1, 2)
        if self.rotary is not None:
            pos_ids = positions.unsqueeze(0)
            q = self.rotary.apply_rope(q, q, position_ids=pos_ids)[0]
            k = self.rotary.apply_rope(k, k, position_ids=pos_ids)[0]
        return q, k, v

    def attend(
        self,
        q: Float[Tensor, "batch head q_pos d_head"],
        k: Float[Tensor, "batch kv_head k_pos d_head"],
        v: Float[Tensor, "batch kv_head k_pos d_head"],
        q_positions: Int[Tensor, " q_pos"],
    ) -> Float[Tensor, "batch q_pos head d_head"]:
        """Causal attention of queries at absolute ``q_positions`` over keys ``0 .. k_pos-1``."""
        if self.kv_repeats > 1:
            k = k.repeat_interleave(self.kv_repeats, dim=1)
            v = v.repeat_interleave(self.kv_repeats, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / self.scale
        scores = apply_softcap(scores, self.soft_cap)
        key_pos = torch.arange(k.shape[-2], device=q.device)
        mask = key_pos.unsqueeze(0) > q_positions.unsqueeze(1)
        scores = scores.masked_fill(mask, float("-inf"))
        pattern = F.softmax(scores, dim=-1).masked_fill(mask, 0.0)
        return torch.matmul(pattern, v).transpose(1, 2)

    def out(self, z: Float[Tensor, "batch pos head d_head"]) -> Float[Tensor, "batch pos d_model"]:
        """The attention output ``W_O z + b_O``."""
        return self.o(z.reshape(*z.shape[:2], -1))

    def mlp_of(self, resid_mid: Float[Tensor, "batch pos d_model"]) -> Tensor:
        """The MLP's output (zero for attention-only models)."""
        if not self.has_mlp:
            return torch.zeros_like(resid_mid)
        return self.mlp(self.ln2(resid_mid))

    def finish(
        self, resid_pre: Float[Tensor, "batch pos d_model"], attn_out: Tensor
    ) -> Float[Tensor, "batch pos d_model"]:
        """``resid_post`` from ``resid_pre`` and the attention output."""
        mid = resid_pre + attn_out
        if not self.has_mlp:
            return mid
        return mid + self.mlp(self.ln2(mid))


class SuffixRunner:
    """Functional, suffix-only execution of a native TransformerBridge.

    Args:
        model: a ``TransformerBridge`` built by ``boot_native`` (see :func:`supports`).
    """

    def __init__(self, model: nn.Module) -> None:
        native = model.original_model
        self.n_layers: int = len(model.blocks)
        self.blocks = [_Block(b) for b in model.blocks]
        self.embed: nn.Embedding = raw(model.embed)  # type: ignore[assignment]
        self.pos_embed: nn.Embedding | None = (
            raw(model.pos_embed) if getattr(native, "pos", None) is not None else None
        )  # type: ignore[assignment]
        self.ln_final: Module = raw(model.ln_final)
        self.unembed: nn.Linear = raw(model.unembed)  # type: ignore[assignment]
        self.logit_soft_cap: float = float(native.output_logits_soft_cap)

    @staticmethod
    def supports(model: object) -> bool:
        """Whether ``model`` is a bridge over TransformerLens's native causal transformer."""
        from transformer_lens.model_bridge.sources.native.model import NativeModel

        native = getattr(model, "original_model", None)
        return (
            isinstance(native, NativeModel)
            and bool(getattr(native.cfg, "attention_dir", "causal") == "causal")
            and hasattr(model, "blocks")
        )

    def logits(self, resid_final: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch d_vocab"]:
        """Final norm and unembedding of residual vectors (one position each)."""
        return apply_softcap(self.unembed(self.ln_final(resid_final)), self.logit_soft_cap)

    @torch.no_grad()
    def run(self, tokens: Int[Tensor, "batch pos"]) -> RunCache:
        """A full forward pass, keeping what patching needs."""
        t = tokens.shape[1]
        positions = torch.arange(t, device=tokens.device)
        x = self.embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions).unsqueeze(0)
        cache = RunCache([x], [], [], [], [], [], [], torch.empty(0))
        for block in self.blocks:
            q, k, v = block.qkv(x, positions)
            z = block.attend(q, k, v, positions)
            attn_out = block.out(z)
            mid = x + attn_out
            mlp_out = block.mlp_of(mid)
            x = mid + mlp_out if block.has_mlp else mid
            cache.z.append(z)
            cache.k.append(k)
            cache.v.append(v)
            cache.attn_out.append(attn_out)
            cache.resid_mid.append(mid)
            cache.mlp_out.append(mlp_out)
            cache.resid.append(x)
        cache.logits_last = self.logits(x[:, -1])
        return cache

    @torch.no_grad()
    def block_suffix(
        self,
        layer: int,
        x: Float[Tensor, "rows suffix d_model"],
        start: int,
        prefix_k: Float[Tensor, "batch kv_head pos d_head"],
        prefix_v: Float[Tensor, "batch kv_head pos d_head"],
        *,
        last_only: bool = False,
    ) -> Float[Tensor, "rows out_pos d_model"]:
        """Run block ``layer`` on positions ``[start, T)`` of ``rows`` patched copies.

        Row ``r`` belongs to batch item ``r % batch``; its keys and values at positions
        ``< start`` are the cached ones of that item. With ``last_only`` only the final
        position is returned (its query alone is computed).
        """
        block = self.blocks[layer]
        rows, width, _ = x.shape
        batch = prefix_k.shape[0]
        reps = rows // batch
        positions = torch.arange(start, start + width, device=x.device)
        q, k, v = block.qkv(x, positions)
        if start > 0:
            pk = prefix_k[:, :, :start].repeat(reps, 1, 1, 1)
            pv = prefix_v[:, :, :start].repeat(reps, 1, 1, 1)
            k = torch.cat([pk, k], dim=2)
            v = torch.cat([pv, v], dim=2)
        if last_only:
            q = q[:, :, -1:]
            positions = positions[-1:]
            x = x[:, -1:]
        z = block.attend(q, k, v, positions)
        return block.finish(x, block.out(z))
