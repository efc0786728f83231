"""``deceptprobe bench caching``: activation caching against the bare forward pass.

Same process, same inputs (random token ids, no padding), last-position ``resid_post`` of every
layer, under ``torch.inference_mode``:

- ``bare_s``: the model's forward pass alone;
- ``deceptprobe_s``: :func:`deceptprobe.activations.collect` (selection inside the hooks, early
  exit after the deepest requested hook);
- ``tl_run_with_cache_s`` / ``tl_run_with_cache_filtered_s``: TransformerLens' ``run_with_cache``
  without / with ``names_filter`` (the list of requested names);
- for the GPT-2-small shape also a Hugging Face ``GPT2LMHeadModel`` (random init, same shape):
  ``hf_bare_s`` (its forward pass) and ``nnsight_s`` (``collect`` on it, which traces with nnsight).

Times are medians of interleaved repeats (the order of methods rotates every repeat) after one
warm-up of each. Peak memory is the peak resident set size above the pre-call level, sampled
every millisecond by a background thread, with freed heap returned to the OS (``malloc_trim``)
before each call — torch's CPU allocations are invisible to ``tracemalloc``.

The streaming case writes all positions of every layer's ``resid_post`` of the GPT-2-small shape
for 2,000 prompts × 32 tokens into a float16 store in a temporary directory (deleted afterwards),
recording the process's peak RSS after 500 and after 2,000 prompts; its throughput is compared
with bare forward passes over the same prompts (half measured before, half after the stream).

``run_benchmark(quick=True)`` (or ``DECEPTPROBE_BENCH_QUICK=1``) shrinks every size for tests.
"""

from __future__ import annotations

import ctypes
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

PEAK_MEM_METHOD = "rss_sampled_1ms_above_baseline_after_malloc_trim"


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - non-glibc
        pass


class _PeakRSS:
    """Samples RSS every ``interval`` seconds in a thread; ``peak`` is the running maximum."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _peak_mem(fn: Callable[[], Any]) -> float:
    _trim()
    base = _rss_mb()
    with _PeakRSS() as p:
        fn()
    return round(max(0.0, p.peak - base), 1)


def _time_interleaved(methods: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    names = list(methods)
    for n in names:  # warm-up
        methods[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            methods[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def _gpt2_bridge(shape: dict[str, int]) -> Any:
    from transformer_lens import TransformerBridge
    from transformer_lens.config import TransformerBridgeConfig

    cfg = TransformerBridgeConfig(
        n_layers=shape["n_layers"],
        d_model=shape["d_model"],
        n_heads=shape["n_heads"],
        d_head=shape["d_head"],
        d_mlp=shape["d_mlp"],
        n_ctx=shape["n_ctx"],
        d_vocab=shape["d_vocab"],
        act_fn="gelu_new",
        normalization_type="LN",
        seed=0,
    )
    model = TransformerBridge.boot_native(cfg)
    model.eval()
    return model


def _gpt2_hf(shape: dict[str, int]) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=shape["n_layers"],
        n_embd=shape["d_model"],
        n_head=shape["n_heads"],
        n_inner=shape["d_mlp"],
        n_positions=shape["n_ctx"],
        vocab_size=shape["d_vocab"],
    )
    return GPT2LMHeadModel(cfg).eval()


def _bench_tl(model: Any, tokens: torch.Tensor, repeats: int) -> dict[str, Any]:
    from deceptprobe.activations import collect

    n_layers = int(model.cfg.n_layers)
    names = [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    mask = torch.ones_like(tokens)

    def bare() -> Any:
        with torch.inference_mode():
            return model(tokens)

    def ours() -> Any:
        return collect(
            model, tokens, attention_mask=mask, hooks="resid_post", batch_size=len(tokens)
        )

    def rwc() -> Any:
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens)
            return {n: cache[n][:, -1] for n in names}

    def rwc_filtered() -> Any:
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens, names_filter=names)
            return {n: cache[n][:, -1] for n in names}

    methods = {
        "bare": bare,
        "deceptprobe": ours,
        "tl_run_with_cache": rwc,
        "tl_run_with_cache_filtered": rwc_filtered,
    }
    t = _time_interleaved(methods, repeats)
    return {
        "bare_s": t["bare"],
        "deceptprobe_s": t["deceptprobe"],
        "tl_run_with_cache_s": t["tl_run_with_cache"],
        "tl_run_with_cache_filtered_s": t["tl_run_with_cache_filtered"],
        "slowdown_vs_bare": t["deceptprobe"] / t["bare"],
        "slowdown_vs_tl_filtered": t["deceptprobe"] / t["tl_run_with_cache_filtered"],
        "peak_mem_mb": {n: _peak_mem(fn) for n, fn in methods.items()},
        "peak_mem_method": PEAK_MEM_METHOD,
    }


def _bench_hf(model: Any, tokens: torch.Tensor, repeats: int) -> dict[str, Any]:
    from deceptprobe.activations import collect

    mask = torch.ones_like(tokens)

    def hf_bare() -> Any:
        with torch.inference_mode():
            return model(input_ids=tokens, attention_mask=mask, use_cache=False)

    def nnsight_collect() -> Any:
        batch = {"input_ids": tokens, "attention_mask": mask}
        return collect(model, batch, hooks="resid_post", batch_size=len(tokens))

    methods = {"hf_bare": hf_bare, "nnsight": nnsight_collect}
    t = _time_interleaved(methods, repeats)
    return {
        "nnsight_s": t["nnsight"],
        "hf_bare_s": t["hf_bare"],
        "peak_mem_mb": {n: _peak_mem(fn) for n, fn in methods.items()},
    }


def _bench_stream(
    model: Any, n_prompts: int, n_tokens: int, checkpoint: int, batch_size: int
) -> dict[str, Any]:
    from deceptprobe.activations.collect import iter_collect, model_identity
    from deceptprobe.activations.store import ActivationStore

    g = torch.Generator().manual_seed(1)
    d_vocab = int(model.cfg.d_vocab)
    tokens = torch.randint(0, d_vocab, (n_prompts, n_tokens), generator=g)
    mask = torch.ones_like(tokens)
    names = [f"blocks.{i}.hook_resid_post" for i in range(int(model.cfg.n_layers))]

    def bare(rows: range) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for lo in range(rows.start, rows.stop, batch_size):
                model(tokens[lo : min(lo + batch_size, rows.stop)])
        return time.perf_counter() - t0

    half = n_prompts // 2
    bare(range(0, min(batch_size, n_prompts)))  # warm-up
    bare_s = bare(range(0, half))
    _trim()
    peak_at_checkpoint = None
    with tempfile.TemporaryDirectory(prefix="deceptprobe-bench-") as tmp:
        t0 = time.perf_counter()
        with _PeakRSS(interval=0.005) as rss:
            store = ActivationStore.create(
                os.path.join(tmp, "store"),
                model_id=model_identity(model),
                hooks=names,
                positions="all",
                dtype=torch.float16,
            )
            with store:
                for rows, acts in iter_collect(
                    model,
                    {"input_ids": tokens, "attention_mask": mask},
                    hooks=names,
                    positions="all",
                    batch_size=batch_size,
                    device="cpu",
                    dtype=torch.float16,
                ):
                    store.append(acts, [{"prompt_index": i} for i in rows])
                    if peak_at_checkpoint is None and rows.stop >= checkpoint:
                        peak_at_checkpoint = rss.peak
            assert len(store) == n_prompts
        stream_s = time.perf_counter() - t0
        peak_end = rss.peak
    bare_s += bare(range(half, n_prompts))
    return {
        "prompts": n_prompts,
        "tokens_per_prompt": n_tokens,
        "dtype": "float16",
        "throughput_vs_bare": bare_s / stream_s,
        "peak_rss_mb_at_500": round(float(peak_at_checkpoint or peak_end), 1),
        "peak_rss_mb_at_2000": round(float(peak_end), 1),
    }


GPT2_SMALL = {
    "n_layers": 12,
    "d_model": 768,
    "n_heads": 12,
    "d_head": 64,
    "d_mlp": 3072,
    "n_ctx": 1024,
    "d_vocab": 50257,
}
QUICK_SHAPE = {
    "n_layers": 2,
    "d_model": 64,
    "n_heads": 2,
    "d_head": 32,
    "d_mlp": 256,
    "n_ctx": 64,
    "d_vocab": 500,
}


def run_benchmark(quick: bool | None = None, *, threads: int | None = None) -> dict[str, Any]:
    """Run the caching benchmark (see the module docstring).

    Args:
        quick: tiny sizes and 2 repeats (for tests); default from ``DECEPTPROBE_BENCH_QUICK``.
        threads: torch CPU threads for the run (restored afterwards); default from
            ``DECEPTPROBE_BENCH_THREADS``, else torch's own setting (1 in quick mode).

    Returns:
        ``{"models": {"tiny": M, "gpt2_small_shape": M}, "stream": {...}}`` as in DESIGN.md;
        the GPT-2 entry also has ``nnsight_s`` and ``hf_bare_s``. In quick mode the sizes
        (and the stream's prompt count) are shrunk; the keys are the same.
    """
    if quick is None:
        quick = os.environ.get("DECEPTPROBE_BENCH_QUICK", "") not in ("", "0")
    if threads is None:
        env = os.environ.get("DECEPTPROBE_BENCH_THREADS")
        threads = int(env) if env else (1 if quick else None)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(bool(quick))
    finally:
        torch.set_num_threads(before)


def _run(quick: bool) -> dict[str, Any]:
    from deceptprobe.organisms.model import ModelConfig, build_model

    shape = QUICK_SHAPE if quick else GPT2_SMALL
    batch, n_tok, repeats = (4, 16, 2) if quick else (8, 64, 5)
    n_prompts, stream_tok, checkpoint = (48, 8, 12) if quick else (2000, 32, 500)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    logger.info("bench caching: tiny organism shape")
    tiny = build_model(ModelConfig(), d_vocab=600, seed=0)
    tiny_tokens = torch.randint(0, 600, (batch, min(n_tok, int(tiny.cfg.n_ctx))), generator=g)
    models: dict[str, Any] = {"tiny": _bench_tl(tiny, tiny_tokens, repeats)}
    del tiny

    logger.info("bench caching: GPT-2-small shape (TransformerLens, then Hugging Face)")
    bridge = _gpt2_bridge(shape)
    tokens = torch.randint(0, shape["d_vocab"], (batch, n_tok), generator=g)
    entry = _bench_tl(bridge, tokens, repeats)
    hf = _gpt2_hf(shape)
    hf_entry = _bench_hf(hf, tokens, repeats)
    del hf
    entry["nnsight_s"] = hf_entry["nnsight_s"]
    entry["hf_bare_s"] = hf_entry["hf_bare_s"]
    entry["slowdown_vs_hf_bare"] = hf_entry["nnsight_s"] / hf_entry["hf_bare_s"]
    entry["peak_mem_mb"].update(hf_entry["peak_mem_mb"])
    models["gpt2_small_shape"] = entry
    logger.info("bench caching: streaming %d prompts into a float16 store", n_prompts)
    stream = _bench_stream(bridge, n_prompts, stream_tok, checkpoint, batch_size=32)
    return {"models": models, "stream": stream}
