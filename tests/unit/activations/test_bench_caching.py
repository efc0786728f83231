"""`deceptprobe bench caching` in quick mode returns every key of the DESIGN.md contract."""

from __future__ import annotations

import pytest

from deceptprobe.bench.caching import run_benchmark

M_KEYS = {
    "bare_s",
    "deceptprobe_s",
    "tl_run_with_cache_s",
    "tl_run_with_cache_filtered_s",
    "slowdown_vs_bare",
    "slowdown_vs_tl_filtered",
    "peak_mem_mb",
}
STREAM_KEYS = {
    "prompts",
    "tokens_per_prompt",
    "dtype",
    "throughput_vs_bare",
    "peak_rss_mb_at_500",
    "peak_rss_mb_at_2000",
}


def test_quick_benchmark_has_contract_keys():
    result = run_benchmark(quick=True)
    assert set(result) == {"models", "stream"}
    assert set(result["models"]) == {"tiny", "gpt2_small_shape"}
    for name, entry in result["models"].items():
        assert M_KEYS <= set(entry), name
        assert entry["slowdown_vs_bare"] > 0 and entry["bare_s"] > 0
        assert entry["peak_mem_mb"]["deceptprobe"] >= 0
    gpt2 = result["models"]["gpt2_small_shape"]
    assert gpt2["nnsight_s"] > 0 and gpt2["hf_bare_s"] > 0
    assert gpt2["slowdown_vs_hf_bare"] == pytest.approx(gpt2["nnsight_s"] / gpt2["hf_bare_s"])
    assert set(result["stream"]) == STREAM_KEYS
    assert result["stream"]["dtype"] == "float16" and result["stream"]["throughput_vs_bare"] > 0
