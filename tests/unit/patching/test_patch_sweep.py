"""patch_sweep equals transformer_lens.patching on the same bridge, for every kind and path."""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tlp
from patching_helpers import tiny_bridge, tiny_organism, token_pair

from deceptprobe.patching import patch_sweep
from deceptprobe.patching.metrics import logit_diff
from deceptprobe.patching.spec import KINDS
from deceptprobe.runtime.runner import SuffixRunner

METRIC = logit_diff(3, 5)


def tl_metric(logits: torch.Tensor) -> torch.Tensor:
    return METRIC(logits[:, -1]).mean()


def tl_reference(model, clean, corrupt, kind: str, metric=tl_metric) -> torch.Tensor:
    _, cache = model.run_with_cache(clean)
    if kind == "resid_pre":
        return tlp.get_act_patch_resid_pre(model, corrupt, cache, metric)
    if kind == "attn_out":
        return tlp.get_act_patch_attn_out(model, corrupt, cache, metric)
    if kind == "mlp_out":
        return tlp.get_act_patch_mlp_out(model, corrupt, cache, metric)
    if kind == "head":
        return tlp.get_act_patch_attn_head_out_by_pos(model, corrupt, cache, metric)
    if kind == "head_all_pos":
        return tlp.get_act_patch_attn_head_out_all_pos(model, corrupt, cache, metric)
    assert kind == "resid_post"
    return tlp.generic_activation_patch(
        model,
        corrupt,
        cache,
        metric,
        patch_setter=tlp.layer_pos_patch_setter,
        activation_name="resid_post",
        index_axis_names=("layer", "pos"),
    )


@pytest.fixture(scope="module", params=["ln3", "rope2"])
def setup(request):
    model = tiny_bridge(request.param)
    clean, corrupt = token_pair(batch=2, seq=4)
    refs = {kind: tl_reference(model, clean, corrupt, kind) for kind in KINDS}
    return model, clean, corrupt, refs


@pytest.mark.parametrize("method", ["suffix", "hooks"])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_transformer_lens(setup, kind, method):
    model, clean, corrupt, refs = setup
    got = patch_sweep(model, clean, corrupt, kind=kind, metric=METRIC, method=method)
    assert got.shape == refs[kind].shape
    assert (got - refs[kind]).abs().max() <= 1e-4


def test_suffix_runner_matches_bridge_forward():
    for name in ("ln3", "rope2", "nonorm3"):
        model = tiny_bridge(name)
        tokens, _ = token_pair(batch=3, seq=9)
        with torch.no_grad():
            ref = model(tokens)[:, -1]
        got = SuffixRunner(model).run(tokens).logits_last
        assert (got - ref).abs().max() <= 1e-5


def test_subsets_of_layers_positions_and_heads():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=1, seq=6)
    full = patch_sweep(model, clean, corrupt, kind="head", metric=METRIC)
    part = patch_sweep(
        model,
        clean,
        corrupt,
        kind="head",
        metric=METRIC,
        layers=[2, 0],
        positions=[-1, 1],
        heads=[3],
    )
    assert part.shape == (2, 2, 1)
    expect = full[[2, 0]][:, [5, 1]][:, :, [3]]
    assert (part - expect).abs().max() <= 1e-5


def test_small_batch_size_chunks_give_the_same_answer():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=2, seq=6)
    for method in ("suffix", "hooks"):
        a = patch_sweep(model, clean, corrupt, kind="resid_pre", metric=METRIC, method=method)
        b = patch_sweep(
            model, clean, corrupt, kind="resid_pre", metric=METRIC, method=method, batch_size=3
        )
        assert (a - b).abs().max() <= 1e-5


def test_full_logit_metric_uses_the_hook_path():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=2, seq=5)

    def every_position(logits: torch.Tensor) -> torch.Tensor:
        return (logits[..., 3] - logits[..., 5]).mean(dim=1)

    got = patch_sweep(model, clean, corrupt, kind="mlp_out", metric=every_position, logits_at="all")
    ref = tl_reference(model, clean, corrupt, "mlp_out", lambda lg: every_position(lg).mean())
    assert (got - ref).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="method='hooks'"):
        patch_sweep(model, clean, corrupt, metric=every_position, logits_at="all", method="suffix")


def test_organism_and_batch_encoding_inputs():
    org = tiny_organism()
    clean = org.to_tokens("alpha beta gamma delta")
    corrupt = org.to_tokens("alpha beta zeta delta")
    a = patch_sweep(org, clean, corrupt, kind="resid_pre", metric=METRIC)
    b = patch_sweep(org.model, clean.input_ids[0], corrupt.input_ids[0], metric=METRIC)
    assert a.shape == (2, 5)
    assert torch.equal(a, b)


def test_patching_identical_tokens_at_layer_zero_is_a_no_op():
    model = tiny_bridge("ln3")
    clean, corrupt = token_pair(batch=1, seq=6)
    corrupt[:, 2] = clean[:, 2]
    got = patch_sweep(model, clean, corrupt, kind="resid_pre", metric=METRIC)
    with torch.no_grad():
        base = METRIC(model(corrupt)[:, -1]).mean()
    assert abs(float(got[0, 2] - base)) <= 1e-5
    # the whole final residual at the last position carries the clean answer
    with torch.no_grad():
        clean_value = METRIC(model(clean)[:, -1]).mean()
    last = patch_sweep(model, clean, corrupt, kind="resid_post", metric=METRIC, layers=[-1])
    assert abs(float(last[0, -1] - clean_value)) <= 1e-5
