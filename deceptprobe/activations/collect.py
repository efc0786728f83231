"""Collect activations: one call for TransformerLens and Hugging Face models.

Caching residual streams is the first step of every probe and every patching experiment.
TransformerLens' ``run_with_cache`` keeps the full ``[batch, pos, d_model]`` tensor of every
hook it fires (TransformerLens issue 746), and a ``names_filter`` only narrows *which* hooks are
kept. :func:`collect` keeps only what was asked, and stops as soon as it has it:

1. **Selection inside the hook.** A forward hook on each requested hook point copies out the
   requested positions (the last real token of each prompt by default) the moment the
   activation exists; the full tensor is never referenced after the hook returns.
2. **Early exit.** Once the deepest requested hook has fired, the hook raises a private
   exception that aborts the forward pass; everything after it (later blocks, the final norm,
   the unembedding — a third of GPT-2-small's FLOPs at 64 tokens) is skipped. Which hook fires
   last is learnt once per model from a 2-token probe run, and early exit is only used when
   that hook fires exactly once per forward pass.
3. **Hooks are global state.** They are added to the model's ``HookPoint``s (resolved once per
   call, aliases and gating checks included) for one forward pass at a time and removed in a
   ``finally``, also on error or early exit; no hook is held across a ``yield``.

Hugging Face models go through nnsight (:mod:`deceptprobe.activations.hf`) with the same call
and the same result layout, keyed by TransformerLens names (``blocks.{i}.hook_resid_post``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

import inspect
import logging
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from deceptprobe.activations import hooks as hook_sel
from deceptprobe.activations.positions import Encoded, Positions, Selector, encode_inputs

logger = logging.getLogger(__name__)

__all__ = ["collect", "iter_collect", "resolve_hooks", "model_identity"]


class _StopForward(Exception):
    """Raised from the deepest requested hook to end the forward pass early."""


# Every hook name of a model (building a TransformerBridge's hook_dict is not free).
_NAMES: weakref.WeakKeyDictionary[nn.Module, tuple[str, ...]] = weakref.WeakKeyDictionary()
# name -> (first firing index, last firing index, number of firings) per model.
_SCHEDULES: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[int, int, int]] | None] = (
    weakref.WeakKeyDictionary()
)


def _is_tl(model: ModelLike) -> bool:
    return isinstance(model, nn.Module) and hasattr(model, "hook_dict") and hasattr(model, "hooks")


def _is_hf(model: ModelLike) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return isinstance(model, PreTrainedModel)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class _TLBackend:
    """A TransformerLens model (``TransformerBridge`` or any ``HookedRootModule``)."""

    def __init__(self, model: nn.Module, word_tokenizer: Any = None) -> None:
        self.model = model
        self.word_tokenizer = word_tokenizer
        cfg = getattr(model, "cfg", None)
        self.n_layers: int | None = getattr(cfg, "n_layers", None)
        self.n_ctx: int | None = getattr(cfg, "n_ctx", None)
        self.device = _model_device(model)

    @property
    def valid_names(self) -> list[str]:
        if self.model not in _NAMES:
            _NAMES[self.model] = tuple(self.model.hook_dict)
        return list(_NAMES[self.model])

    @property
    def pad_id(self) -> int | None:
        if self.word_tokenizer is not None:
            return int(self.word_tokenizer.pad_id)
        tok = getattr(self.model, "tokenizer", None)
        return getattr(tok, "pad_token_id", None) if tok is not None else None

    @property
    def tokenize(self) -> Callable[[list[str]], tuple[Tensor, Tensor]] | None:
        if self.word_tokenizer is not None:
            wt = self.word_tokenizer

            def word(texts: list[str]) -> tuple[Tensor, Tensor]:
                enc = wt.encode_batch(texts)
                return enc.input_ids, enc.attention_mask

            return word
        if getattr(self.model, "tokenizer", None) is None or not hasattr(self.model, "to_tokens"):
            return None
        model = self.model

        def tl(texts: list[str]) -> tuple[Tensor, Tensor]:
            from transformer_lens.utilities.tokenize_utils import get_attention_mask

            prepend = bool(getattr(model.cfg, "default_prepend_bos", True))
            ids = model.to_tokens(
                texts, prepend_bos=prepend, padding_side="right", truncate=False
            ).cpu()
            mask = get_attention_mask(model.tokenizer, ids, prepend, padding_side="right")
            return ids, mask

        return tl

    def schedule(self) -> dict[str, tuple[int, int, int]] | None:
        """Forward-pass firing order of every hook name, from one 2-token probe run (cached)."""
        if self.model in _SCHEDULES:
            return _SCHEDULES[self.model]
        hook_dict = self.model.hook_dict
        names_of: dict[int, list[str]] = {}
        point_of: dict[int, Any] = {}
        for name, hp in hook_dict.items():
            names_of.setdefault(id(hp), []).append(name)
            point_of[id(hp)] = hp
        gated = getattr(self.model, "_gated_hook_reason", None)
        events: list[int] = []
        fwd: list[tuple[str, Callable[..., None]]] = []
        for pid, names in names_of.items():
            if gated is not None and gated(point_of[pid].name or names[0]) is not None:
                continue

            def record(tensor: Any, hook: Any = None, _pid: int = pid) -> None:
                events.append(_pid)

            fwd.append((names[0], record))
        result: dict[str, tuple[int, int, int]] | None
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                with self.model.hooks(fwd_hooks=fwd):
                    self.model(torch.zeros((1, 2), dtype=torch.long, device=self.device))
            result = {}
            for pid, names in names_of.items():
                idx = [i for i, e in enumerate(events) if e == pid]
                if idx:
                    for n in names:
                        result[n] = (idx[0], idx[-1], len(idx))
        except Exception as e:  # a model whose forward we cannot probe: no early exit
            logger.debug("hook schedule probe failed (%s); early exit disabled", e)
            result = None
        _SCHEDULES[self.model] = result
        return result

    def resolve(self, hooks: hook_sel.HookSelection, layers: Sequence[int] | None) -> list[str]:
        sched = self.schedule()
        order = {n: v[0] for n, v in sched.items()} if sched else None
        return hook_sel.resolve(
            hooks, self.valid_names, layers=layers, n_layers=self.n_layers, order=order
        )

    def runner(
        self, names: list[str], out_device: torch.device, out_dtype: torch.dtype | None
    ) -> _TLRunner:
        return _TLRunner(self, names, out_device, out_dtype)


class _TLRunner:
    """Hooks attached once for a whole collect() call; each batch just runs the model."""

    def __init__(
        self,
        backend: _TLBackend,
        names: list[str],
        out_device: torch.device,
        out_dtype: torch.dtype | None,
    ) -> None:
        self.backend = backend
        self.names = names
        self.out_device = out_device
        self.out_dtype = out_dtype
        self.selector: Selector | None = None
        self.out: dict[str, Tensor] = {}
        sched = backend.schedule()
        self.stop_name: str | None = None
        if sched is not None and all(n in sched for n in names):
            deepest = max(names, key=lambda n: sched[n][1])
            if sched[deepest][2] == 1:
                self.stop_name = deepest
        # Hook points resolved once per call (aliases included); gated points refused up front.
        hook_dict = backend.model.hook_dict
        check = getattr(backend.model, "check_hooks_to_add", None)
        self.points: list[tuple[Any, Callable[..., None]]] = []
        for n in names:
            fn = self._hook(n)
            if check is not None:
                check(hook_dict[n], n, fn, dir="fwd")
            self.points.append((hook_dict[n], fn))

    def _hook(self, name: str) -> Callable[..., None]:
        def fn(tensor: Tensor, hook: Any = None) -> None:
            assert self.selector is not None
            act = tensor[0] if isinstance(tensor, tuple) else tensor
            picked = self.selector(act.detach(), name)
            picked = picked.to(device=self.out_device, dtype=self.out_dtype or picked.dtype)
            if picked.untyped_storage().data_ptr() == act.untyped_storage().data_ptr():
                picked = picked.clone(memory_format=torch.contiguous_format)
            self.out[name] = picked
            if name == self.stop_name:
                raise _StopForward

        return fn

    def run(self, enc: Encoded, selector: Selector) -> dict[str, Tensor]:
        """One forward pass with the hooks attached (removed on exit, also on error)."""
        self.selector, self.out = selector, {}
        kwargs: dict[str, Any] = {}
        model = self.backend.model
        if enc.left_padded:
            if "attention_mask" not in inspect.signature(model.forward).parameters:
                raise ValueError(
                    f"{type(model).__name__}.forward takes no attention_mask, so left-padded "
                    "inputs cannot be masked; pad on the right instead"
                )
            kwargs["attention_mask"] = enc.attention_mask
        handles: list[tuple[Any, Any]] = []
        try:
            # Hooks are global state: attached for this forward pass only, always removed.
            for point, fn in self.points:
                handles.append((point, point.add_hook(fn, dir="fwd")))
            model(enc.input_ids, **kwargs)
        except _StopForward:
            pass
        finally:
            for point, handle in handles:
                handle.hook.remove()
                point.fwd_hooks[:] = [h for h in point.fwd_hooks if h is not handle]
            out, self.out, self.selector = self.out, {}, None
        missing = [n for n in self.names if n not in out]
        if missing:
            raise RuntimeError(f"hooks {missing} did not fire during the forward pass")
        return {n: out[n] for n in self.names}


def backend_for(model: ModelLike, tokenizer: Any) -> Any:
    from deceptprobe.organisms.model import Organism

    if isinstance(model, Organism):
        return _TLBackend(model.model, word_tokenizer=model.tokenizer)
    if _is_tl(model):
        if tokenizer is not None and hasattr(tokenizer, "encode_batch"):
            return _TLBackend(model, word_tokenizer=tokenizer)
        return _TLBackend(model)
    from deceptprobe.runtime.hf import HFModel, wrap_hf

    if isinstance(model, HFModel):
        from deceptprobe.activations.hf import HFBackend

        return HFBackend(model)
    if _is_hf(model):
        from deceptprobe.activations.hf import HFBackend

        return HFBackend(wrap_hf(model, tokenizer))
    raise TypeError(
        f"collect() cannot hook a {type(model).__module__}.{type(model).__name__}: pass an "
        "Organism, a TransformerLens TransformerBridge / HookedRootModule, or a Hugging Face "
        "PreTrainedModel"
    )


def resolve_hooks(
    model: ModelLike, hooks: hook_sel.HookSelection, *, layers: Sequence[int] | None = None
) -> list[str]:
    """The exact hook names ``collect(model, ..., hooks=hooks, layers=layers)`` returns, in order."""
    return backend_for(model, None).resolve(hooks, layers)


def model_identity(model: ModelLike) -> str:
    """A short string naming a model's weights, for activation-store compatibility checks.

    Organisms use their card's weights sha256; other models a fingerprint of parameter names,
    shapes, dtypes and a strided sample of values (cheap, and changes when weights change).
    """

    from deceptprobe.organisms.model import Organism
    from deceptprobe.runtime.base import weights_fingerprint
    from deceptprobe.runtime.hf import HFModel

    if isinstance(model, Organism):
        sha = model.card.get("weights_sha256") or model.card.get("sha256")
        if sha:
            return f"organism:{model.name}:{str(sha)[:16]}"
        model = model.model
    if isinstance(model, HFModel):
        model = model.model
    return weights_fingerprint(model)


def collect(
    model: ModelLike,
    inputs: Any,
    *,
    hooks: hook_sel.HookSelection,
    positions: Positions = "last",
    attention_mask: Tensor | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    layers: Sequence[int] | None = None,
    tokenizer: Any = None,
) -> dict[str, Float[Tensor, "batch ..."]]:
    """Run ``model`` on ``inputs`` and return only the requested activations.

    Args:
        model: an ``Organism``, a TransformerLens ``TransformerBridge`` / ``HookedRootModule``,
            or a Hugging Face ``PreTrainedModel`` (traced with nnsight; ``resid_pre`` /
            ``resid_post`` of block ``i`` are ``hidden_states[i]`` / ``hidden_states[i + 1]``).
        inputs: a list of prompts, a ``[batch, pos]`` token tensor, or a mapping /
            ``BatchEncoding`` with ``input_ids`` and ``attention_mask``.
        hooks: hook names, short names (``"resid_post"``) or globs
            (``"blocks.*.hook_resid_post"``); see :mod:`deceptprobe.activations.hooks`.
        positions: ``"last"`` (last real token of each prompt, any padding side), ``"all"``,
            an int index into the padded sequence, or a bool mask ``[batch, pos]``.
        attention_mask: 1 for real tokens; overrides a mask in ``inputs``. Without one, padding
            is inferred from the tokenizer's (or config's) pad id.
        batch_size: prompts per forward pass.
        device: where the returned tensors live (default: the model's device). Inputs always
            go to the model's device.
        dtype: dtype of the returned tensors (default: the model's activation dtype).
        progress: show a rich progress bar on stderr.
        layers: keep only hooks in these blocks (``hooks="resid_post", layers=[0, -1]``).
        tokenizer: a Hugging Face tokenizer for string inputs to a Hugging Face model (or a
            word tokenizer for a bare TransformerLens model).

    Returns:
        ``{hook_name: tensor}`` in forward (layer) order: ``[batch, d_model]`` for one position
        per prompt, ``[batch, pos, d_model]`` for ``"all"``, ``[n_selected, d_model]`` for a
        mask (rows in batch-major order).

    Raises:
        ValueError: unknown hook (with the valid names and closest matches), empty input, a
            prompt longer than the model's context, or bad positions.
        TypeError: a model type we cannot hook, or an unsupported input form.
    """
    chunks: dict[str, list[Tensor]] = {}
    for _, got in iter_collect(
        model,
        inputs,
        hooks=hooks,
        positions=positions,
        attention_mask=attention_mask,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        layers=layers,
        tokenizer=tokenizer,
    ):
        for n, v in got.items():
            chunks.setdefault(n, []).append(v)
    return {n: v[0] if len(v) == 1 else torch.cat(v) for n, v in chunks.items()}


def iter_collect(
    model: ModelLike,
    inputs: Any,
    *,
    hooks: hook_sel.HookSelection,
    positions: Positions = "last",
    attention_mask: Tensor | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    layers: Sequence[int] | None = None,
    tokenizer: Any = None,
    start: int = 0,
) -> Iterator[tuple[range, dict[str, Tensor]]]:
    """:func:`collect`, one batch at a time: yields ``(rows, activations)`` per forward pass.

    Memory stays bounded by one batch, so this is what streaming to disk uses. Inputs are
    validated (hooks, context length, positions) before the first forward pass. ``start``
    skips the first rows (resuming). Arguments as in :func:`collect`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    backend = backend_for(model, tokenizer)
    names = backend.resolve(hooks, layers)
    enc = encode_inputs(
        inputs,
        attention_mask=attention_mask,
        tokenize=backend.tokenize,
        pad_id=backend.pad_id,
        bos_id=getattr(backend, "bos_id", None),
    )
    selector = Selector.build(positions, enc)
    trim = selector.kind == "last"
    real_cols = enc.attention_mask.bool().any(0).nonzero()
    width = int(real_cols.max()) + 1 if trim else enc.input_ids.shape[1]
    if backend.n_ctx is not None and width > backend.n_ctx:
        lengths = enc.attention_mask.sum(1)
        row = int(lengths.argmax())
        raise ValueError(
            f"input is {width} positions wide (prompt {row} has {int(lengths[row])} tokens), "
            f"more than the model's context of {backend.n_ctx} tokens; shorten the prompts"
        )
    if getattr(backend.model, "training", False):
        logger.warning(
            "%s is in training mode: dropout makes activations random; call model.eval()",
            type(backend.model).__name__,
        )
    out_device = torch.device(device) if device is not None else backend.device
    runner = backend.runner(names, out_device, dtype)
    bar = _progress(progress, len(enc) - start)
    try:
        for lo in range(start, len(enc), batch_size):
            hi = min(lo + batch_size, len(enc))
            batch = enc.rows(lo, hi, trim_right=trim).to(backend.device)
            # Hooks and inference mode are entered per batch, never held across a yield.
            with torch.inference_mode():
                got = runner.run(batch, selector.rows(lo, hi, backend.device))
            if bar is not None:
                bar[0].update(bar[1], advance=hi - lo)
            yield range(lo, hi), got
    finally:
        if bar is not None:
            bar[0].stop()


def _progress(enabled: bool, total: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("collecting activations", total=total)
    bar.start()
    return bar, task
