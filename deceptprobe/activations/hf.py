"""Activations of Hugging Face causal LMs, through nnsight, under TransformerLens names.

Where each name lives in each architecture is the runtime's table
(:mod:`deceptprobe.runtime.arch`); the meanings are TransformerLens's:
``blocks.{i}.hook_resid_pre`` / ``hook_resid_post`` are the hidden states entering / leaving
block ``i`` (the last block's ``resid_post`` *before* the final norm; the normed value is
``ln_final.hook_normalized`` = ``hidden_states[-1]``), ``hook_attn_out`` / ``hook_mlp_out``
the two sublayers' contributions, ``attn.hook_z`` the per-head attention output
``[batch, pos, head, d_head]``.

Inside one nnsight trace the requested values are read in forward order, the requested
positions are selected inside the trace, and the run stops (``tracer.stop()``) once the
deepest requested value is read, so later blocks and the LM head never run. Every batch gets
``position_ids`` counted from each row's first real token, so left padding does not shift a
prompt's positions.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from deceptprobe.activations import hooks as hook_sel
from deceptprobe.activations.positions import Encoded, Selector
from deceptprobe.runtime.base import positions_from_mask
from deceptprobe.runtime.hf import HOOK_KINDS, HFModel


def _envoy(root: Any, path: str) -> Any:
    """The envoy at a module path; a submodule named like an envoy attribute (BERT's
    ``output``) is mounted by nnsight under ``E_<name>``."""
    from nnsight import Envoy

    for part in path.split("."):
        if inspect.isdatadescriptor(getattr(Envoy, part, None)):
            part = f"{Envoy.OVERLOAD_PREFIX}{part}"
        root = getattr(root, part)
    return root


class HFBackend:
    """An :class:`~deceptprobe.runtime.hf.HFModel` traced with nnsight."""

    def __init__(self, hm: HFModel) -> None:
        self.hm = hm
        self.model = hm.model
        self.n_layers: int | None = hm.n_layers
        self.n_ctx: int | None = hm.n_ctx
        self.device = hm.tokens_device()
        self._wrapper: Any = None
        params = inspect.signature(self.model.forward).parameters
        self.takes_positions = "position_ids" in params

    @property
    def valid_names(self) -> list[str]:
        return self.hm.hook_names()

    @property
    def pad_id(self) -> int | None:
        if self.hm.tokenizer is not None:
            return self.hm.tokenizer.pad_id
        pad = getattr(self.model.config, "pad_token_id", None)
        return int(pad) if pad is not None else None

    @property
    def bos_id(self) -> int | None:
        if self.hm.tokenizer is not None:
            return self.hm.tokenizer.bos_id
        bos = getattr(self.model.config, "bos_token_id", None)
        return int(bos) if isinstance(bos, int) else None

    @property
    def tokenize(self) -> Callable[[list[str]], tuple[Tensor, Tensor]] | None:
        tok = self.hm.tokenizer
        if tok is None:
            return None

        def run(texts: list[str]) -> tuple[Tensor, Tensor]:
            enc = tok.encode_batch(texts, max_len=None)
            return enc.input_ids, enc.attention_mask

        return run

    def resolve(self, hooks: hook_sel.HookSelection, layers: Sequence[int] | None) -> list[str]:
        return hook_sel.resolve(hooks, self.valid_names, layers=layers, n_layers=self.n_layers)

    def runner(
        self, names: list[str], out_device: torch.device, out_dtype: torch.dtype | None
    ) -> _HFRunner:
        return _HFRunner(self, names, out_device, out_dtype)

    def wrapper(self) -> Any:
        """The nnsight envoy of the model, built once per collect() call.

        Not cached across calls: an envoy holds its module, so a cache keyed by the model would
        keep every model ever traced alive.
        """
        if self._wrapper is None:
            from nnsight import NNsight

            with warnings.catch_warnings():
                # BERT-style blocks have a submodule named ``output``; nnsight renames it.
                warnings.filterwarnings("ignore", message=".*nnsight already serves.*")
                self._wrapper = NNsight(self.model)
        return self._wrapper


def _forward_order(name: str) -> tuple[int, int]:
    if name == "ln_final.hook_normalized":
        return (1 << 30, 0)
    layer = hook_sel.layer_of(name)
    kind = name.split(".", 2)[2]
    return (layer if layer is not None else -1, HOOK_KINDS.index(kind))


class _HFRunner:
    def __init__(
        self,
        backend: HFBackend,
        names: list[str],
        out_device: torch.device,
        out_dtype: torch.dtype | None,
    ) -> None:
        self.backend = backend
        self.names = names
        self.out_device = out_device
        self.out_dtype = out_dtype
        hm = backend.hm
        self.plan = [(n, *hm.hook_module(n)) for n in sorted(names, key=_forward_order)]
        self.n_heads, self.d_head = hm.n_heads, hm.d_head

    def _take(self, act: Any, name: str, selector: Selector) -> Tensor:
        if isinstance(act, tuple):
            act = act[0]
        if name.endswith("attn.hook_z"):
            act = act.reshape(*act.shape[:-1], self.n_heads, self.d_head)
        picked = selector(act.detach(), name)
        picked = picked.to(device=self.out_device, dtype=self.out_dtype or picked.dtype)
        if picked.untyped_storage().data_ptr() == act.untyped_storage().data_ptr():
            picked = picked.clone(memory_format=torch.contiguous_format)
        return picked

    def run(self, enc: Encoded, selector: Selector) -> dict[str, Tensor]:
        import nnsight

        wrapped = self.backend.wrapper()
        kwargs: dict[str, Any] = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
        if self.backend.takes_positions:
            kwargs["position_ids"] = positions_from_mask(enc.attention_mask)
        kwargs.update(enc.extra)
        if getattr(self.backend.model.config, "use_cache", None) is not None:
            kwargs["use_cache"] = False
        results: dict[str, Tensor] = {}
        take = self._take
        with wrapped.trace(**kwargs) as tracer:
            for name, path, side in self.plan:
                mod = _envoy(wrapped, path)
                if side == "input":
                    args, kw = mod.inputs
                    value = args[0] if args else next(iter(kw.values()))
                else:
                    value = mod.output
                results[name] = nnsight.save(take(value, name, selector))
            tracer.stop()
        missing = [n for n in self.names if n not in results]
        if missing:
            raise RuntimeError(f"hooks {missing} were not reached during the forward pass")
        return {n: results[n] for n in self.names}
