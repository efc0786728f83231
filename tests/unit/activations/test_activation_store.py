"""ActivationStore: round trips, streaming, integrity, compatibility, cache_to_store."""

from __future__ import annotations

import json

import pytest
import torch
from act_helpers import PROMPTS
from hypothesis import given, settings
from hypothesis import strategies as st

from deceptprobe.activations import ActivationStore, collect
from deceptprobe.activations.store import StoreError
from deceptprobe.activations.stream import cache_to_store

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def _acts(rows: int, seed: int = 0, d: int = 4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {h: torch.randn(rows, d, generator=g).to(dtype) for h in HOOKS}


def _create(path, **kw):
    args = {"model_id": "m", "hooks": HOOKS, "positions": "last", "dtype": torch.float32}
    args.update(kw)
    return ActivationStore.create(path, **args)


def test_round_trip_append_and_labels(tmp_path):
    a, b = _acts(5, 0), _acts(4, 1)
    with _create(tmp_path / "s", shard_rows=3) as store:
        store.append(a, [{"label": i % 2, "score": 0.5 * i} for i in range(5)])
        store.append(b, [{"label": 1, "score": 1.0}] * 4)
        assert len(store) == 9
    store = ActivationStore(tmp_path / "s")
    assert len(store) == 9 and store.hooks == HOOKS and store.n_shards == 3
    assert store.d_model == 4 and store.dtype == torch.float32 and store.positions == "last"
    loaded = store.load()
    for h in HOOKS:
        torch.testing.assert_close(loaded[h], torch.cat([a[h], b[h]]), rtol=0, atol=0)
    assert store.labels("label").tolist() == [0, 1, 0, 1, 0, 1, 1, 1, 1]
    assert store.labels("score").dtype == torch.float32
    assert store.load(HOOKS[1:]).keys() == {HOOKS[1]}
    with pytest.raises(StoreError, match="no label 'nope'"):
        store.labels("nope")
    # resume-append through open_or_create
    with ActivationStore.open_or_create(
        tmp_path / "s", model_id="m", hooks=HOOKS, positions="last", dtype=torch.float32
    ) as again:
        assert len(again) == 9
        again.append(_acts(1, 2), [{"label": 0, "score": 0.0}])
    assert len(ActivationStore(tmp_path / "s")) == 10


def test_iter_batches_streams_across_shards(tmp_path):
    a = _acts(10)
    with _create(tmp_path / "s", shard_rows=4) as store:
        store.append(a, [{"i": i} for i in range(10)])
    store = ActivationStore(tmp_path / "s")
    batches = list(store.iter_batches(3, hooks=HOOKS[0]))
    assert [len(m) for _, m in batches] == [3, 3, 3, 1]
    got = torch.cat([t[HOOKS[0]] for t, _ in batches])
    torch.testing.assert_close(got, a[HOOKS[0]], rtol=0, atol=0)
    assert [m["i"] for _, ms in batches for m in ms] == list(range(10))


def test_corrupt_and_truncated_shard_named(tmp_path):
    with _create(tmp_path / "s", shard_rows=2) as store:
        store.append(_acts(4), [{}] * 4)
    shard = tmp_path / "s" / "shard-000001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    store = ActivationStore(tmp_path / "s")
    with pytest.raises(StoreError, match="shard-000001.safetensors .*corrupt or truncated"):
        store.load()
    shard.write_bytes(bytes(data[:20]))
    with pytest.raises(StoreError, match="shard-000001"):
        list(store.iter_batches(1))


def test_incompatible_use_is_refused(tmp_path):
    with _create(tmp_path / "s") as store:
        store.append(_acts(2), [{}, {}])
        with pytest.raises(StoreError, match="hooks"):
            store.append({HOOKS[0]: torch.zeros(2, 4)}, [{}, {}])
        with pytest.raises(StoreError, match="dtype"):
            store.append(_acts(2, dtype=torch.float16), [{}, {}])
        with pytest.raises(StoreError, match="shape"):
            store.append(_acts(2, d=5), [{}, {}])
        with pytest.raises(StoreError, match="row counts"):
            store.append(_acts(2), [{}])
        with pytest.raises(StoreError, match="JSON"):
            store.append(_acts(1), [{"x": object()}])
    for key, value in [("model_id", "other"), ("dtype", torch.float16), ("positions", "all")]:
        with pytest.raises(StoreError, match=key):
            ActivationStore.open_or_create(
                tmp_path / "s",
                **{
                    "model_id": "m",
                    "hooks": HOOKS,
                    "positions": "last",
                    "dtype": torch.float32,
                    key: value,
                },
            )
    with pytest.raises(StoreError, match="not empty"):
        _create(tmp_path / "s")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("hi")
    with pytest.raises(StoreError, match="not empty"):
        _create(tmp_path / "junk")
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path / "junk")


def test_uncommitted_shards_are_discarded(tmp_path):
    with _create(tmp_path / "s", shard_rows=2) as store:
        store.append(_acts(4), [{}] * 4)
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    index["shards"] = index["shards"][:1]
    index["n_rows"] = 2
    (tmp_path / "s" / "index.json").write_text(json.dumps(index))
    (tmp_path / "s" / ".shard-000005.safetensors.tmp").write_bytes(b"partial")
    reader = ActivationStore(tmp_path / "s")  # readers ignore, and never delete, extra files
    assert len(reader) == 2 and len(reader.load()[HOOKS[0]]) == 2
    assert (tmp_path / "s" / "shard-000001.safetensors").exists()
    with ActivationStore.open_or_create(
        tmp_path / "s", model_id="m", hooks=HOOKS, positions="last", dtype=torch.float32
    ) as writer:
        assert len(writer) == 2
        names = sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith("."))
        assert names == ["index.json", "shard-000000.jsonl", "shard-000000.safetensors"]
        assert not (tmp_path / "s" / ".shard-000005.safetensors.tmp").exists()
        with pytest.raises(StoreError, match="another process"):
            ActivationStore.open_or_create(
                tmp_path / "s", model_id="m", hooks=HOOKS, positions="last", dtype=torch.float32
            )
        writer.append(_acts(1, 3), [{}])
    assert len(ActivationStore(tmp_path / "s")) == 3


@settings(max_examples=15, deadline=None)
@given(
    chunks=st.lists(st.integers(0, 7), min_size=1, max_size=5),
    shard_rows=st.integers(1, 6),
    d=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    batch=st.integers(1, 9),
)
def test_shard_round_trip_property(tmp_path_factory, chunks, shard_rows, d, dtype, batch):
    path = tmp_path_factory.mktemp("prop") / "s"
    appended = []
    with _create(path, shard_rows=shard_rows, dtype=dtype) as store:
        for seed, n in enumerate(chunks):
            acts = _acts(n, seed, d, dtype)
            store.append(acts, [{"seed": seed, "k": k} for k in range(n)])
            appended.append(acts)
    store = ActivationStore(path)
    total = sum(chunks)
    assert len(store) == total
    if total == 0:
        assert list(store.iter_batches(batch)) == []
        return
    want = {h: torch.cat([a[h] for a in appended]) for h in HOOKS}
    got = store.load()
    for h in HOOKS:
        assert torch.equal(got[h], want[h])
    streamed = list(store.iter_batches(batch))
    assert sum(len(m) for _, m in streamed) == total
    assert all(len(m) == batch for _, m in streamed[:-1])
    assert torch.equal(torch.cat([t[HOOKS[0]] for t, _ in streamed]), want[HOOKS[0]])
    assert [m["seed"] for m in store.metadata] == [
        s for s, n in enumerate(chunks) for _ in range(n)
    ]


def test_cache_to_store_equals_collect_and_resumes(organism, tmp_path):
    meta = [{"label": i % 2} for i in range(len(PROMPTS))]
    store = cache_to_store(
        organism,
        PROMPTS,
        hooks="resid_post",
        out=tmp_path / "c",
        metadata=meta,
        batch_size=2,
        shard_rows=2,
        progress=False,
    )
    ref = collect(organism, PROMPTS, hooks="resid_post")
    loaded = store.load()
    assert list(loaded) == list(ref)
    for h in ref:
        torch.testing.assert_close(loaded[h], ref[h], rtol=0, atol=1e-5)
    assert store.labels("label").tolist() == [0, 1, 0, 1, 0]
    assert [m["prompt_index"] for m in store.metadata] == list(range(5))
    # a completed store is resumed as a no-op; different prompts are refused
    again = cache_to_store(
        organism, PROMPTS, hooks="resid_post", out=tmp_path / "c", progress=False
    )
    assert len(again) == 5 and again.n_shards == store.n_shards
    with pytest.raises(StoreError, match="inputs_sha256"):
        cache_to_store(
            organism, PROMPTS[:3], hooks="resid_post", out=tmp_path / "c", progress=False
        )
    with pytest.raises(StoreError, match="not empty"):
        cache_to_store(
            organism, PROMPTS, hooks="resid_post", out=tmp_path / "c", resume=False, progress=False
        )


def test_cache_all_positions_fp16(organism, tmp_path):
    store = cache_to_store(
        organism,
        PROMPTS,
        hooks="blocks.1.hook_resid_pre",
        positions="all",
        out=tmp_path / "a",
        dtype=torch.float16,
        batch_size=2,
        progress=False,
    )
    ref = collect(organism, PROMPTS, hooks="blocks.1.hook_resid_pre", positions="all")
    got = store.load()["blocks.1.hook_resid_pre"]
    assert got.dtype == torch.float16 and got.shape == ref["blocks.1.hook_resid_pre"].shape
    torch.testing.assert_close(got, ref["blocks.1.hook_resid_pre"].half())
    assert [m["n_tokens"] for m in store.metadata] == organism.to_tokens(
        PROMPTS
    ).attention_mask.sum(1).tolist()
