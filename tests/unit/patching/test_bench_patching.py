"""``bench patching`` returns exactly DESIGN.md's keys (run on shrunken shapes here)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from deceptprobe.bench import patching as bench

KEYS = {
    "deceptprobe_s",
    "transformer_lens_s",
    "speedup",
    "max_abs_diff",
    "flop_limit_speedup",
    "atp_s",
    "atp_pearson_r",
}


def test_quick_benchmark_keys(monkeypatch):
    small = {
        "n_layers": 2,
        "d_model": 32,
        "n_heads": 2,
        "d_head": 16,
        "d_mlp": 64,
        "n_ctx": 16,
        "d_vocab": 40,
        "act_fn": "gelu",
    }
    monkeypatch.setattr(
        bench,
        "SHAPES",
        {
            "tiny": {"cfg": small, "positions": 4, "repeats": 1},
            "gpt2_small_shape": {
                "cfg": {**small, "n_heads": 4, "d_head": 8},
                "positions": 3,
                "repeats": 1,
            },
        },
    )
    monkeypatch.setattr(
        bench,
        "QUICK",
        {
            "tiny": {"positions": 4, "repeats": 1},
            "gpt2_small_shape": {"positions": 3, "repeats": 1},
        },
    )
    out = bench.run_benchmark(quick=True)
    assert list(out) == ["models"]
    assert list(out["models"]) == ["tiny", "gpt2_small_shape", "hf_gpt2_small_shape"]
    for name, p in out["models"].items():
        assert set(p) == (KEYS - {"flop_limit_speedup"} if name.startswith("hf") else KEYS)
        assert all(isinstance(v, float) and math.isfinite(v) for v in p.values())
        assert p["max_abs_diff"] <= 1e-4
        assert p["speedup"] == pytest.approx(p["transformer_lens_s"] / p["deceptprobe_s"])


def test_flop_limit_is_above_one_and_grows_with_vocabulary():
    base = {"n_layers": 3, "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512}
    small = bench.flop_limit_speedup(SimpleNamespace(**base, d_vocab=600), 16)
    big = bench.flop_limit_speedup(SimpleNamespace(**base, d_vocab=50000), 16)
    assert 1 < small < big
