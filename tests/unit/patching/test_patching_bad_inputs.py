"""Bad inputs fail early with errors that say what to do."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import tiny_bridge, tiny_organism, token_pair

from deceptprobe.patching import attribution_patch, patch_sweep
from deceptprobe.patching.metrics import logit_diff

METRIC = logit_diff(3, 5)


@pytest.fixture(params=[patch_sweep, attribution_patch], ids=["patch", "atp"])
def fn(request):
    return request.param


def test_different_lengths(fn):
    clean, corrupt = token_pair(batch=1, seq=5)
    with pytest.raises(ValueError, match="same length, got 5 and 4 tokens"):
        fn(tiny_bridge("ln3"), clean, corrupt[:, :4], metric=METRIC)


def test_different_batch_sizes(fn):
    clean, corrupt = token_pair(batch=2, seq=5)
    with pytest.raises(ValueError, match="same size"):
        fn(tiny_bridge("ln3"), clean, corrupt[:1], metric=METRIC)


def test_unknown_kind_lists_the_valid_ones(fn):
    clean, corrupt = token_pair()
    with pytest.raises(ValueError, match="valid kinds: resid_pre, resid_post, attn_out"):
        fn(tiny_bridge("ln3"), clean, corrupt, kind="resid_mid", metric=METRIC)


@pytest.mark.parametrize("positions", [[7], [-8], [0, 99]])
def test_positions_outside_the_sequence(fn, positions):
    clean, corrupt = token_pair(batch=1, seq=7)
    with pytest.raises(ValueError, match="outside the sequence"):
        fn(tiny_bridge("ln3"), clean, corrupt, positions=positions, metric=METRIC)


def test_layers_and_heads_outside_the_model(fn):
    clean, corrupt = token_pair(batch=1, seq=4)
    with pytest.raises(ValueError, match="layer 3 is outside the model"):
        fn(tiny_bridge("ln3"), clean, corrupt, layers=[3], metric=METRIC)
    with pytest.raises(ValueError, match="head 4 is outside"):
        fn(tiny_bridge("ln3"), clean, corrupt, kind="head", heads=[4], metric=METRIC)


def test_options_that_do_not_apply(fn):
    clean, corrupt = token_pair(batch=1, seq=4)
    with pytest.raises(ValueError, match="use kind 'head'"):
        fn(tiny_bridge("ln3"), clean, corrupt, kind="head_all_pos", positions=[1], metric=METRIC)
    with pytest.raises(ValueError, match="heads only apply"):
        fn(tiny_bridge("ln3"), clean, corrupt, kind="resid_pre", heads=[1], metric=METRIC)


def test_bad_token_shapes_and_options():
    model = tiny_bridge("ln3")
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        patch_sweep(model, torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), metric=METRIC)
    clean, corrupt = token_pair(batch=1, seq=4)
    with pytest.raises(ValueError, match="logits_at"):
        patch_sweep(model, clean, corrupt, metric=METRIC, logits_at="first")
    with pytest.raises(ValueError, match="method"):
        patch_sweep(model, clean, corrupt, metric=METRIC, method="fast")


def test_padded_batches_are_refused():
    org = tiny_organism()
    enc = org.to_tokens(["alpha beta gamma", "alpha beta"])
    with pytest.raises(ValueError, match="the batch is padded"):
        patch_sweep(org, enc, enc, metric=METRIC)
