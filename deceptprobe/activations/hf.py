"""Residual streams of any Hugging Face model, through nnsight, under TransformerLens names.

A Hugging Face transformer keeps its blocks in one ``nn.ModuleList`` (``transformer.h`` in
GPT-2, ``encoder.layer`` in BERT, ``model.layers`` in Llama). We find it generically (the longest
``ModuleList`` of identical modules) and read, inside one nnsight trace:

- ``blocks.{i}.hook_resid_pre``  = the input of block ``i``   = ``hidden_states[i]``,
- ``blocks.{i}.hook_resid_post`` = the output of block ``i``  = ``hidden_states[i + 1]``.

Like ``output_hidden_states=True``, the last block's ``resid_post`` is taken *after* the model's
final norm when the model has one next to its blocks (GPT-2's ``ln_f``, Llama's ``norm``), so the
values equal ``transformers``' own ``hidden_states`` exactly. Positions are selected inside the
trace and the run stops (``tracer.stop()``) once the deepest requested value is read, so the LM
head never runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deceptprobe.activations import hooks as hook_sel
from deceptprobe.activations.positions import Encoded, Selector

_FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "final_layernorm", "norm_f", "ln_final")


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted path and the ``ModuleList`` of a model's transformer blocks.

    Raises:
        TypeError: the model has no list of identical blocks.
    """
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        if best is None or len(mod) > len(best[1]):
            best = (name, mod)
    if best is None:
        raise TypeError(
            f"cannot find the transformer blocks of {type(model).__name__}: no nn.ModuleList "
            "of identical layers"
        )
    return best


def _final_norm(model: nn.Module, layers_path: str) -> str | None:
    parent_path = layers_path.rpartition(".")[0]
    parent = model.get_submodule(parent_path) if parent_path else model
    for attr in _FINAL_NORMS:
        if isinstance(getattr(parent, attr, None), nn.Module):
            return f"{parent_path}.{attr}" if parent_path else attr
    return None


def _envoy(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


class HFBackend:
    """A Hugging Face ``PreTrainedModel`` traced with nnsight."""

    def __init__(self, model: nn.Module, tokenizer: Any = None) -> None:
        self.model = model
        self.hf_tokenizer = tokenizer
        self.layers_path, layers = find_layers(model)
        self.n_layers: int | None = len(layers)
        self.norm_path = _final_norm(model, self.layers_path)
        cfg = getattr(model, "config", None)
        self.n_ctx: int | None = getattr(cfg, "max_position_embeddings", None) or getattr(
            cfg, "n_positions", None
        )
        self.device = next(model.parameters()).device
        self._wrapper: Any = None

    @property
    def valid_names(self) -> list[str]:
        assert self.n_layers is not None
        return [
            f"blocks.{i}.hook_resid_{kind}"
            for i in range(self.n_layers)
            for kind in ("pre", "post")
        ]

    @property
    def pad_id(self) -> int | None:
        if self.hf_tokenizer is not None and self.hf_tokenizer.pad_token_id is not None:
            return int(self.hf_tokenizer.pad_token_id)
        pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        return int(pad) if pad is not None else None

    @property
    def tokenize(self) -> Callable[[list[str]], tuple[Tensor, Tensor]] | None:
        tok = self.hf_tokenizer
        if tok is None:
            return None

        def run(texts: list[str]) -> tuple[Tensor, Tensor]:
            enc = tok(texts, padding=True, return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"]

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
        wanted = set(names)
        assert backend.n_layers is not None
        self.plan: list[tuple[int, str | None, str | None]] = []
        for i in range(backend.n_layers):
            pre, post = f"blocks.{i}.hook_resid_pre", f"blocks.{i}.hook_resid_post"
            if pre in wanted or post in wanted:
                self.plan.append(
                    (i, pre if pre in wanted else None, post if post in wanted else None)
                )
        self.last_layer = backend.n_layers - 1

    def _take(self, act: Any, name: str, selector: Selector) -> Tensor:
        if isinstance(act, tuple):
            act = act[0]
        picked = selector(act.detach(), name)
        picked = picked.to(device=self.out_device, dtype=self.out_dtype or picked.dtype)
        if picked.untyped_storage().data_ptr() == act.untyped_storage().data_ptr():
            picked = picked.clone(memory_format=torch.contiguous_format)
        return picked

    def run(self, enc: Encoded, selector: Selector) -> dict[str, Tensor]:
        import nnsight

        wrapped = self.backend.wrapper()
        layers = _envoy(wrapped, self.backend.layers_path)
        norm = _envoy(wrapped, self.backend.norm_path) if self.backend.norm_path else None
        kwargs: dict[str, Any] = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
        kwargs.update(enc.extra)
        if getattr(self.backend.model.config, "use_cache", None) is not None:
            kwargs["use_cache"] = False
        results: dict[str, Tensor] = {}
        plan, last, take = self.plan, self.last_layer, self._take
        with wrapped.trace(**kwargs) as tracer:
            for i, pre, post in plan:
                if pre is not None:
                    args, kw = layers[i].inputs
                    hidden = args[0] if args else kw["hidden_states"]
                    results[pre] = nnsight.save(take(hidden, pre, selector))
                if post is not None:
                    value = norm.output if (i == last and norm is not None) else layers[i].output
                    results[post] = nnsight.save(take(value, post, selector))
            tracer.stop()
        missing = [n for n in self.names if n not in results]
        if missing:
            raise RuntimeError(f"hooks {missing} were not reached during the forward pass")
        return {n: results[n] for n in self.names}
