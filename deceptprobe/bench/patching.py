"""``deceptprobe bench patching``: a full ``resid_pre`` sweep, deceptprobe vs TransformerLens.

Two random-init models: the tiny organism shape (3 layers, d_model 128, 4 heads, d_vocab 600,
16 positions) and a GPT-2-small shape (12 layers, d_model 768, 12 heads, d_vocab 50257, 12
positions). Both methods start from tokens: TransformerLens's time is ``run_with_cache`` on the
clean prompt plus ``get_act_patch_resid_pre`` (one full forward pass per patch); deceptprobe's is
``patch_sweep``. Times are medians of interleaved repeats in one process.

``flop_limit_speedup`` is the ratio of the FLOPs TransformerLens spends (a full forward pass per
patch, unembedding at every position, plus the clean run) to the FLOPs deceptprobe's method must
spend (clean and corrupt runs with the unembedding at the final position, then for a patch at
layer ``l``, position ``p``: blocks ``l..L-1`` at positions ``p..T-1``, in the last block only
keys and values except at the final position, and the unembedding at one position), counted
analytically (weight matmuls and attention, 2 FLOPs per multiply-accumulate). The measured
speedup can exceed it: TransformerLens also pays Python and hook overhead per pass.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from deceptprobe.patching.attribution import attribution_patch, pearson_r
from deceptprobe.patching.metrics import logit_diff
from deceptprobe.patching.patch import patch_sweep
from deceptprobe.runtime.runner import block_macs_per_token

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "cfg": {
            "n_layers": 3,
            "d_model": 128,
            "n_heads": 4,
            "d_head": 32,
            "d_mlp": 512,
            "n_ctx": 96,
            "d_vocab": 600,
            "act_fn": "gelu",
        },
        "positions": 16,
        "repeats": 5,
    },
    "gpt2_small_shape": {
        "cfg": {
            "n_layers": 12,
            "d_model": 768,
            "n_heads": 12,
            "d_head": 64,
            "d_mlp": 3072,
            "n_ctx": 1024,
            "d_vocab": 50257,
            "act_fn": "gelu_new",
        },
        "positions": 12,
        "repeats": 3,
    },
}
QUICK: dict[str, dict[str, Any]] = {
    "tiny": {"positions": 8, "repeats": 1},
    "gpt2_small_shape": {"cfg": {"n_layers": 2}, "positions": 4, "repeats": 1},
}


def run_benchmark(quick: bool = False, threads: int | None = 1) -> dict[str, Any]:
    """The ``bench patching`` JSON: ``{"models": {"tiny": P, "gpt2_small_shape": P,
    "hf_gpt2_small_shape": P}}`` (the last without ``flop_limit_speedup``).

    Args:
        quick: a smaller, single-repeat run (fewer layers and positions) for tests.
        threads: torch intra-op threads while timing (restored afterwards); ``None`` keeps
            torch's setting. One thread by default: both methods run the same settings, and
            on a shared CPU an oversubscribed thread pool makes timings erratic.
    """
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        models: dict[str, Any] = {}
        for name, shape in SHAPES.items():
            cfg = dict(shape["cfg"])
            positions, repeats = shape["positions"], shape["repeats"]
            if quick:
                cfg.update(QUICK[name].get("cfg", {}))
                positions, repeats = QUICK[name]["positions"], QUICK[name]["repeats"]
            models[name] = _bench_model(cfg, positions, repeats)
        shape = SHAPES["gpt2_small_shape"]
        cfg = dict(shape["cfg"])
        positions, repeats = shape["positions"], shape["repeats"]
        if quick:
            cfg.update(QUICK["gpt2_small_shape"].get("cfg", {}))
            positions, repeats = 4, 1
        models["hf_gpt2_small_shape"] = _bench_hf_model(cfg, positions, repeats)
    finally:
        torch.set_num_threads(saved)
    return {"models": models}


def _build(cfg: dict[str, Any]) -> Any:
    from transformer_lens import TransformerBridge
    from transformer_lens.config import TransformerBridgeConfig

    model = TransformerBridge.boot_native(
        TransformerBridgeConfig(normalization_type="LN", seed=0, **cfg)
    )
    model.eval()
    return model


@contextmanager
def _quiet_transformer_lens() -> Iterator[None]:
    """Silence the per-patch tqdm bar of ``transformer_lens.patching`` while timing."""
    import transformer_lens.patching as tlp

    saved = tlp.tqdm
    tlp.tqdm = lambda iterable, *a, **k: iterable  # type: ignore[assignment]
    try:
        yield
    finally:
        tlp.tqdm = saved


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _compare(ours_model: Any, tl_model: Any, d_vocab: int, positions: int, repeats: int
             ) -> dict[str, float]:  # fmt: skip
    """deceptprobe's ``resid_pre`` sweep on ``ours_model`` against ``transformer_lens.patching``
    on ``tl_model`` (the same weights), timed interleaved; attribution patching beside it."""
    import transformer_lens.patching as tlp

    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, d_vocab, (1, positions), generator=gen)
    corrupt = torch.randint(0, d_vocab, (1, positions), generator=gen)
    metric = logit_diff(1, 2)

    def ours() -> torch.Tensor:
        return patch_sweep(ours_model, clean, corrupt, kind="resid_pre", metric=metric)

    def theirs() -> torch.Tensor:
        _, cache = tl_model.run_with_cache(clean)
        with torch.no_grad():
            return tlp.get_act_patch_resid_pre(
                tl_model, corrupt, cache, lambda logits: metric(logits[:, -1]).mean()
            )

    def atp() -> torch.Tensor:
        return attribution_patch(ours_model, clean, corrupt, kind="resid_pre", metric=metric)

    with _quiet_transformer_lens():
        # warm-up (TransformerLens's sweep is a loop of identical passes and warms itself)
        ours_result, atp_result = ours(), atp()
        times: dict[str, list[float]] = {"ours": [], "tl": [], "atp": []}
        tl_result = None
        for _ in range(repeats):
            for key, fn in (("ours", ours), ("tl", theirs), ("atp", atp)):
                seconds, result = _timed(fn)
                times[key].append(seconds)
                if key == "tl" and tl_result is None:
                    tl_result = result
    assert tl_result is not None
    ours_s = statistics.median(times["ours"])
    tl_s = statistics.median(times["tl"])
    return {
        "deceptprobe_s": ours_s,
        "transformer_lens_s": tl_s,
        "speedup": tl_s / ours_s,
        "max_abs_diff": float((ours_result - tl_result).abs().max()),
        "atp_s": statistics.median(times["atp"]),
        "atp_pearson_r": pearson_r(atp_result, ours_result),
    }


def _bench_model(cfg: dict[str, Any], positions: int, repeats: int) -> dict[str, float]:
    model = _build(cfg)
    out = _compare(model, model, cfg["d_vocab"], positions, repeats)
    out["flop_limit_speedup"] = flop_limit_speedup(model.cfg, positions)
    return out


def _bench_hf_model(cfg: dict[str, Any], positions: int, repeats: int) -> dict[str, float]:
    """A Hugging Face ``GPT2LMHeadModel`` (random init, ``cfg``'s shape): deceptprobe's
    ``patch_sweep`` on it against ``transformer_lens.patching`` on the same weights booted with
    ``TransformerBridge.boot_transformers`` (TransformerLens's way to patch an HF model)."""
    import tempfile

    from transformer_lens import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from deceptprobe.runtime.hf import wrap_hf

    torch.manual_seed(0)
    hf_cfg = GPT2Config(
        n_layer=cfg["n_layers"], n_embd=cfg["d_model"], n_head=cfg["n_heads"],
        n_inner=cfg["d_mlp"], vocab_size=cfg["d_vocab"], n_positions=cfg["n_ctx"],
    )  # fmt: skip
    model = GPT2LMHeadModel(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        twin = GPT2LMHeadModel.from_pretrained(tmp).eval()  # the bridge wraps its modules
        bridge = TransformerBridge.boot_transformers(tmp, hf_model=twin, device="cpu")
    hm = wrap_hf(model, name="hf_gpt2_small_shape")
    return _compare(hm, bridge, cfg["d_vocab"], positions, repeats)


def _attn_flops(n_heads: int, d_head: int, queries: int, keys: int) -> float:
    """Scores and pattern-times-values: 2 matmuls of ``queries x keys x d_attn``."""
    return 2.0 * 2 * queries * keys * n_heads * d_head


def flop_limit_speedup(cfg: Any, positions: int) -> float:
    """Analytic FLOPs of TransformerLens's sweep over those of deceptprobe's, ``resid_pre``."""
    n_layers, seq = int(cfg.n_layers), positions
    d_model, n_heads, d_head = int(cfg.d_model), int(cfg.n_heads), int(cfg.d_head)
    block = 2.0 * block_macs_per_token(cfg)
    unembed = 2.0 * d_model * int(cfg.d_vocab)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    kv = 2.0 * 2 * d_model * n_kv * d_head  # key and value projections, one token
    full_pass = n_layers * (seq * block + _attn_flops(n_heads, d_head, seq, seq))
    tl = (n_layers * seq + 1) * (full_pass + seq * unembed)  # one pass per patch + clean cache
    ours = 2 * (full_pass + unembed)  # clean and corrupt runs, final-position unembed
    for layer in range(n_layers):
        for p in range(seq):
            width = seq - p
            middle = n_layers - 1 - layer  # blocks before the last one
            ours += middle * (width * block + _attn_flops(n_heads, d_head, width, seq))
            ours += width * kv + (block - kv) + _attn_flops(n_heads, d_head, 1, seq)
            ours += unembed
    return tl / ours
