"""Hugging Face causal LMs as a :class:`~deceptprobe.runtime.base.ModelRuntime`.

:func:`load_hf` reads a checkpoint directory as ``save_pretrained`` writes it (``config.json``,
safetensors weights, tokenizer files) — never a pickle, never the network — and returns an
:class:`HFModel`: the model, its tokenizer wrapped in :class:`HFTokenizer` (padding, position
ids, BOS), and TransformerLens-named hook points (:mod:`deceptprobe.runtime.arch`).

Tokenization follows one rule on every architecture: BOS (or BERT's ``[CLS]``), then the text's
tokens, no end-of-text token: the last token of a prompt is its last word, where probes read
and generation continues. A tokenizer without a pad token pads with its EOS token (one
warning). Left-padded batches get ``position_ids`` counted from each row's first real token,
so a prompt's activations do not depend on its batch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from deceptprobe.runtime.arch import Architecture, architecture_of, submodule, supported
from deceptprobe.runtime.base import BatchEncoding, positions_from_mask, weights_fingerprint
from deceptprobe.runtime.device import resolve_device, resolve_dtype
from deceptprobe.runtime.hf_tokenizer import HFTokenizer

log = logging.getLogger(__name__)

HOOK_KINDS = ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
"""Per-block hook names, in the order they fire within a block."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """``transformers``' progress bars (loading, writing shards) off, restored afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _cfg(config: Any, *names: str) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return None


def locate(model: nn.Module, path: str | None) -> str | None:
    """``path`` in ``model``, or the same path without its first part (a model without head)."""
    if path is None:
        return None
    for candidate in (path, path.partition(".")[2]):
        if not candidate:
            continue
        try:
            model.get_submodule(candidate)
        except AttributeError:
            continue
        return candidate
    return None


HookFn = Callable[[Tensor, Any], Tensor | None]


@dataclass(frozen=True)
class _HookPoint:
    """What a hook function receives as ``hook`` (TransformerLens passes its HookPoint)."""

    name: str


@dataclass
class HFModel:
    """A Hugging Face causal LM with its tokenizer and TransformerLens-named hook points.

    Attributes:
        model: the ``PreTrainedModel`` (eval mode).
        tokenizer: its :class:`HFTokenizer`.
        name: a short name (the checkpoint directory's name).
        card: provenance: path, ``model_type``, fingerprint, and metrics once measured.
        config: the task family's config when one was named (``--task``), else ``None``.
    """

    model: nn.Module
    tokenizer: HFTokenizer | None
    name: str = "hf"
    card: dict[str, Any] = field(default_factory=dict)
    config: Any = None
    arch: Architecture = field(init=False)
    paths: dict[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.arch = architecture_of(self.model.config)
        layers = locate(self.model, self.arch.layers)
        if layers is None:
            raise ValueError(
                f"{type(self.model).__name__} has no block list at {self.arch.layers!r}; the "
                f"runtime's {self.arch.name} entry does not match this model"
            )
        self.paths = {
            "layers": layers,
            "final_norm": locate(self.model, self.arch.final_norm),
            "embed": locate(self.model, self.arch.embed),
        }
        emb = self.model.get_input_embeddings()
        if (
            self.tokenizer is not None
            and emb is not None
            and len(self.tokenizer) > emb.weight.shape[0]
        ):
            raise ValueError(
                f"the tokenizer has {len(self.tokenizer)} tokens but the model's embedding has "
                f"{emb.weight.shape[0]} rows: they do not belong together (resize the embedding "
                "with model.resize_token_embeddings(len(tokenizer)) before saving)"
            )

    # ---------------------------------------------------------------- shape facts
    @property
    def backend(self) -> str:
        return "hf"

    @property
    def n_layers(self) -> int:
        return len(submodule(self.model, self.paths["layers"] or ""))  # type: ignore[arg-type]

    @property
    def d_model(self) -> int:
        return int(_cfg(self.model.config, "hidden_size", "n_embd", "d_model"))

    @property
    def n_heads(self) -> int:
        return int(_cfg(self.model.config, "num_attention_heads", "n_head"))

    @property
    def d_head(self) -> int:
        hd = _cfg(self.model.config, "head_dim")
        return int(hd) if hd else self.d_model // self.n_heads

    @property
    def d_vocab(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def n_ctx(self) -> int:
        return int(_cfg(self.model.config, "max_position_embeddings", "n_positions") or 2048)

    @property
    def device(self) -> torch.device:
        return self.tokens_device()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tokens_device(self) -> torch.device:
        """Where input ids go: the embedding's device (the first device under a device map)."""
        emb = self.model.get_input_embeddings()
        w = emb.weight if emb is not None else next(self.model.parameters())
        return w.device if w.device.type != "meta" else torch.device("cpu")

    def to(self, device: str | torch.device) -> HFModel:
        self.model.to(device)
        return self

    # ------------------------------------------------------------------ hooks
    def block(self, i: int) -> nn.Module:
        return submodule(self.model, f"{self.paths['layers']}.{i}")

    def hook_names(self) -> list[str]:
        names = [f"blocks.{i}.{k}" for i in range(self.n_layers) for k in HOOK_KINDS]
        if self.paths["final_norm"] is not None:
            names.append("ln_final.hook_normalized")
        return names

    def hook_module(self, name: str) -> tuple[str, Literal["input", "output"]]:
        """The module path (relative to the model) and side that holds a hook's value."""
        if name == "ln_final.hook_normalized":
            if self.paths["final_norm"] is None:
                raise ValueError(f"{self.arch.name} models have no final norm")
            return self.paths["final_norm"], "output"  # type: ignore[return-value]
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            raise ValueError(f"unknown hook {name!r}")
        block = f"{self.paths['layers']}.{parts[1]}"
        kind = ".".join(parts[2:])
        table: dict[str, tuple[str, Literal["input", "output"]]] = {
            "hook_resid_pre": (block, "input"),
            "hook_resid_post": (block, "output"),
            "hook_attn_out": (f"{block}.{self.arch.attn}", "output"),
            "hook_mlp_out": (f"{block}.{self.arch.mlp}", "output"),
            "attn.hook_z": (f"{block}.{self.arch.o_proj}", "input"),
        }
        if kind not in table:
            raise ValueError(f"unknown hook {name!r}")
        return table[kind]

    def fingerprint(self) -> str:
        return weights_fingerprint(self.model)

    # ------------------------------------------------------------------ training
    def forward_ids(self, ids: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Differentiable logits of right-padded ids (causal: padding after a token is inert)."""
        kw: dict[str, Tensor] = {"input_ids": ids.to(self.tokens_device())}
        if self.arch.name == "bert":
            kw["token_type_ids"] = torch.zeros_like(kw["input_ids"])
        return self.model(**kw, use_cache=False).logits

    def answer_loss(
        self, ids: Tensor, mask: Tensor, *, model: nn.Module | None = None
    ) -> Float[Tensor, ""]:
        """Mean next-token cross-entropy where ``mask`` is 1 (:func:`~deceptprobe.organisms.
        train.answer_loss`), with the LM head applied only at those positions.

        A forward pre-hook on the output embedding keeps the hidden states of the masked
        positions alone, so the ``d_model × d_vocab`` projection and the softmax run on the
        answer tokens (a fraction of the batch) instead of every position: the same loss, a
        large share of a fine-tuning step saved on a big vocabulary. ``model`` (default the
        runtime's) may be a wrapper of it, such as a ``peft`` model.
        """
        ids = ids.to(self.tokens_device())
        mask = mask.to(ids.device)
        rows, cols = mask.nonzero(as_tuple=True)
        head = self.model.get_output_embeddings()
        if head is None:
            from deceptprobe.organisms.train import answer_loss

            return answer_loss(self.forward_ids(ids), ids, mask)

        def keep(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (args[0][rows, cols], *args[1:])

        kw: dict[str, Tensor] = {"input_ids": ids}
        if self.arch.name == "bert":
            kw["token_type_ids"] = torch.zeros_like(ids)
        handle = head.register_forward_pre_hook(keep)
        try:
            logits = (model or self.model)(**kw, use_cache=False).logits
        finally:
            handle.remove()
        logp = torch.log_softmax(logits.float(), dim=-1)
        targets = ids[:, 1:][rows, cols]
        nll = -logp.gather(-1, targets[:, None]).squeeze(-1)
        return (nll * mask[rows, cols]).sum() / mask.sum().clamp_min(1.0)

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        return self.tok().encode_pair(prompt, answer)

    def clone(self, *, fresh_seed: int | None = None) -> HFModel:
        """A deep copy (or a fresh random init of the same config from ``fresh_seed``).

        The tokenizer is shared (it holds no weights); the card starts empty and the task
        config is copied.
        """
        import copy

        if getattr(self.model, "hf_device_map", None):
            raise ValueError(
                f"{self.name} is spread over devices by accelerate (device_map); load it onto "
                "one device to copy or train it"
            )
        if fresh_seed is None:
            model = copy.deepcopy(self.model)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(fresh_seed)
                model = type(self.model)(copy.deepcopy(self.model.config))
            model.to(device=self.device, dtype=self.dtype)
        model.eval()
        return HFModel(
            model, self.tokenizer, name=self.name, card={}, config=copy.deepcopy(self.config)
        )

    # ----------------------------------------------- TransformerLens-style hooked runs
    def __call__(self, tokens: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of unpadded ``[batch, pos]`` tokens (TransformerLens's ``model(tokens)``)."""
        tokens = tokens.to(self.device)
        mask = torch.ones_like(tokens)
        kw = self.forward_kwargs(BatchEncoding(tokens, mask))
        return self.model(**kw, use_cache=False).logits

    def prefix_cache(self, tokens: Int[Tensor, "batch prefix"]) -> Any:
        """The key/value cache of unpadded ``tokens`` (``transformers``' own cache object)."""
        tokens = tokens.to(self.device)
        kw = self.forward_kwargs(BatchEncoding(tokens, torch.ones_like(tokens)))
        with torch.no_grad():
            return self.model(**kw, use_cache=True, logits_to_keep=1).cache

    def suffix_logits(
        self,
        tokens: Int[Tensor, "batch pos"],
        start: int,
        cache: Any,
        *,
        fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    ) -> Float[Tensor, "batch d_vocab"]:
        """Final-position logits of ``tokens`` run from position ``start`` on, the keys and
        values of positions ``< start`` taken from ``cache`` (consumed: it grows).

        Hooks see activations of positions ``start..T-1`` only (index ``p - start``). The
        unembedding runs at the final position alone.
        """
        tokens = tokens.to(self.device)
        b, t = tokens.shape
        kw: dict[str, Any] = {
            "input_ids": tokens[:, start:],
            "attention_mask": torch.ones((b, t), dtype=torch.long, device=tokens.device),
            "position_ids": torch.arange(start, t, device=tokens.device).expand(b, -1),
        }
        if self.arch.name == "bert":
            kw["token_type_ids"] = torch.zeros_like(kw["input_ids"])
        if start > 0:
            kw["cache"] = cache
        with self.hooks(fwd_hooks):
            out = self.model(**kw, use_cache=start > 0, logits_to_keep=1)
        return out.logits[:, -1]

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        """Forward hooks at TransformerLens names for the duration of the block.

        Each ``fn(activation, hook)`` sees the value under its TransformerLens meaning
        (``attn.hook_z`` as ``[batch, pos, head, d_head]``) and may return a replacement;
        ``hook.name`` is the hook's name. Hooks are removed on exit, also on error.
        """
        handles: list[Any] = []
        try:
            for name, fn in fwd_hooks:
                path, side = self.hook_module(name)
                mod = submodule(self.model, path)
                if side == "output":
                    handles.append(mod.register_forward_hook(self._output_hook(name, fn)))
                else:
                    handles.append(
                        mod.register_forward_pre_hook(self._input_hook(name, fn), with_kwargs=True)
                    )
            yield
        finally:
            for h in handles:
                h.remove()

    def _output_hook(self, name: str, fn: HookFn) -> Callable[..., Any]:
        point = _HookPoint(name)

        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                new = fn(output[0], point)
                return output if new is None else (new, *output[1:])
            new = fn(output, point)
            return output if new is None else new

        return hook

    def _input_hook(self, name: str, fn: HookFn) -> Callable[..., Any]:
        point = _HookPoint(name)
        heads = (self.n_heads, self.d_head) if name.endswith("attn.hook_z") else None

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            x = args[0] if args else kwargs["hidden_states"]
            view = x.reshape(*x.shape[:-1], *heads) if heads else x
            new = fn(view, point)
            if new is None:
                return None
            if heads:
                new = new.reshape(*new.shape[:-2], -1)
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return hook

    def run_with_hooks(
        self, tokens: Tensor, *, fwd_hooks: Sequence[tuple[str, HookFn]] = ()
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of a run with ``fwd_hooks`` attached (TransformerLens's ``run_with_hooks``)."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(
        self, tokens: Tensor, *, names_filter: Callable[[str], bool] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and every (filtered) hook's activation (TransformerLens's ``run_with_cache``)."""
        cache: dict[str, Tensor] = {}
        names = [n for n in self.hook_names() if names_filter is None or names_filter(n)]

        def keep(act: Tensor, hook: _HookPoint) -> None:
            cache[hook.name] = act.detach().clone()

        with torch.no_grad():
            logits = self.run_with_hooks(tokens, fwd_hooks=[(n, keep) for n in names])
        return logits, cache

    # ------------------------------------------------------------- forward passes
    def tok(self) -> HFTokenizer:
        """The tokenizer (an error when the model was wrapped without one)."""
        if self.tokenizer is None:
            raise ValueError(
                f"{self.name} has no tokenizer: pass token ids, or load the checkpoint with its "
                "tokenizer files (load_hf) or wrap it with wrap_hf(model, tokenizer)"
            )
        return self.tokenizer

    def to_tokens(self, texts: str | Sequence[str]) -> BatchEncoding:
        if isinstance(texts, str):
            texts = [texts]
        return self.tok().encode_batch(list(texts), max_len=self.n_ctx).to(self.device)

    def to_str_tokens(self, text: str) -> list[str]:
        return self.tok().to_str_tokens(text)

    def forward_kwargs(self, enc: BatchEncoding) -> dict[str, Tensor]:
        """Model inputs for a padded batch: ids, mask, and position ids counted per row."""
        pos = enc.position_ids if enc.position_ids is not None else positions_from_mask(
            enc.attention_mask
        )  # fmt: skip
        kw = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "position_ids": pos}
        if self.arch.name == "bert":
            kw["token_type_ids"] = torch.zeros_like(enc.input_ids)
        return kw

    @torch.no_grad()
    def logits(self, texts: str | Sequence[str]) -> Float[Tensor, "batch d_vocab"]:
        enc = self.to_tokens(texts)
        out = self.model(**self.forward_kwargs(enc), use_cache=False).logits
        last = enc.attention_mask.sum(1) - 1
        return out[torch.arange(out.shape[0], device=out.device), last.to(out.device)]

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        batch_size: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """Completions (greedy by default) through ``model.generate`` with its key/value cache."""
        out: list[str] = []
        tok = self.tok()
        if seed is not None:
            torch.manual_seed(seed)
        for lo in range(0, len(prompts), batch_size):
            chunk = list(prompts[lo : lo + batch_size])
            enc = tok.encode_batch(chunk, padding_side="left").to(self.device)
            room = self.n_ctx - enc.input_ids.shape[1]
            steps = min(max_new_tokens, room)
            if steps < 1:
                out.extend("" for _ in chunk)
                continue
            kw: dict[str, Any] = {"do_sample": do_sample}
            if do_sample:
                kw["temperature"] = temperature
            gen = self.model.generate(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                max_new_tokens=steps,
                pad_token_id=tok.pad_id,
                eos_token_id=tok.eos_id,
                **kw,
            )
            new = gen[:, enc.input_ids.shape[1] :]
            for row in new.tolist():
                if tok.eos_id in row:
                    row = row[: row.index(tok.eos_id)]
                out.append(tok.decode(row))
        return out


# ------------------------------------------------------------------------ loading
def is_hf_checkpoint(path: Path) -> bool:
    """True when ``path`` looks like a ``save_pretrained`` directory (config with model_type)."""
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "model_type" in data and "format_version" not in data


_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1}  # fmt: skip


def _weights_bytes(path: Path, dtype: torch.dtype | None) -> int | None:
    """Bytes the checkpoint's weights take in memory (from the safetensors headers)."""
    import struct

    total = 0
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for d in meta["shape"]:
                numel *= int(d)
            floating = meta["dtype"] in ("F64", "F32", "F16", "BF16")
            size = torch.empty((), dtype=dtype).element_size() if dtype and floating else None
            total += numel * (size or _ST_BYTES.get(meta["dtype"], 4))
    return total


def _available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_checkpoint_files(path: Path) -> None:
    """One clear error naming the files an HF checkpoint directory must hold."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    has_weights = (
        any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()
    )
    if not has_weights:
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ValueError(
                f"{path} holds its weights as a pickle (*.bin / *.pt), which deceptprobe never "
                "loads; re-save it with model.save_pretrained(dir, safe_serialization=True)"
            )
        missing.append("model.safetensors (or sharded *.safetensors with an index)")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or tokenizer_config.json + vocabulary)")
    if missing:
        raise ValueError(
            f"{path} is not a complete Hugging Face checkpoint: missing {', '.join(missing)}; "
            "save both with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)"
        )


def load_hf(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    offload_folder: str | Path | None = None,
) -> HFModel:
    """Load a local HF checkpoint directory as an :class:`HFModel` (offline, safetensors only).

    Args:
        path: a directory as ``save_pretrained`` writes it.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default: CUDA when present).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (default: the checkpoint's own).
        device_map: ``"auto"`` loads through accelerate's big-model inference (layers spread
            over GPUs, CPU and ``offload_folder`` on disk); ``device`` is then ignored.
        max_memory: per-device budgets for ``device_map`` (``{"cpu": "50MiB"}`` …).
        offload_folder: where offloaded weights go (default: a folder in the checkpoint's
            parent named ``<name>.offload``).

    Raises:
        ValueError: missing files, an unsupported architecture, a tokenizer that does not
            match the model, a device or dtype this machine cannot run, or a model larger
            than the free memory without ``device_map``.
    """
    from transformers import AutoConfig, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    check_checkpoint_files(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    arch = architecture_of(config)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if device_map is None:
        size, free = _weights_bytes(path, dt), _available_bytes(dev)
        if size is not None and free is not None and size > free:
            raise ValueError(
                f"{path.name} needs about {size / 2**30:.1f} GiB but {dev} has "
                f"{free / 2**30:.1f} GiB free; pass --device-map auto to spread it over "
                "devices and disk, or a smaller --dtype"
            )
    if arch.name == "bert":
        config.is_decoder = True
    import transformers

    cls = getattr(transformers, arch.loader)
    kwargs: dict[str, Any] = {"config": config, "local_files_only": True, "use_safetensors": True}
    if dt is not None:
        kwargs["dtype"] = dt
    if device_map is not None:
        folder = Path(offload_folder) if offload_folder else path.parent / f"{path.name}.offload"
        kwargs.update(device_map=device_map, offload_folder=str(folder))
        if max_memory is not None:
            kwargs["max_memory"] = max_memory
    import warnings

    with quiet_progress_bars(), warnings.catch_warnings():  # "Loading weights" bars
        warnings.filterwarnings("ignore", message=".*newly initialized.*")
        model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    if device_map is None:
        model.to(dev)
    model.eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    hm = HFModel(model, HFTokenizer(tok, n_ctx=None), name=path.name)
    hm.tok().n_ctx = hm.n_ctx
    hm.card = {
        "kind": "hf",
        "path": str(path.resolve()),
        "model_type": config.model_type,
        "architecture": arch.name,
        "class": type(model).__name__,
        "fingerprint": hm.fingerprint(),
    }
    fresh = sorted(info.get("missing_keys", []))
    if fresh:
        hm.card["newly_initialised"] = fresh
    return hm


def wrap_hf(model: nn.Module, tokenizer: Any = None, *, name: str | None = None) -> HFModel:
    """An :class:`HFModel` around an already loaded model and tokenizer."""
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} is not a Hugging Face PreTrainedModel")
    hm = HFModel(model, None, name=name or type(model).__name__)
    if tokenizer is not None:
        hm.tokenizer = HFTokenizer(tokenizer, n_ctx=hm.n_ctx)
        hm.__post_init__()  # the vocabulary check, now with the tokenizer
    return hm


__all__ = ["HFModel", "HFTokenizer", "load_hf", "wrap_hf", "is_hf_checkpoint", "supported"]
