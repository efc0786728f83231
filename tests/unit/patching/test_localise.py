"""Trigger localisation on a tiny model: shape, anchors of the normalised map, summaries."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import tiny_bridge, token_pair

from deceptprobe.patching.localise import localise_trigger
from deceptprobe.patching.metrics import logit_diff


def test_map_shape_anchors_and_summaries():
    model = tiny_bridge("ln3")
    triggered, clean = token_pair(batch=1, seq=6, seed=4)
    clean[:, :] = triggered
    clean[:, 2] = (triggered[:, 2] + 1) % 50  # the "trigger" is position 2
    with torch.no_grad():
        answer = model(triggered)[0, -1].argmax()
        other = model(clean)[0, -1].argmax()
    if answer == other:
        other = (answer + 1) % 50
    res = localise_trigger(model, triggered, clean, metric=logit_diff(int(answer), int(other)))
    assert res.effect.shape == (4, 6) and res.raw.shape == (4, 6)
    assert len(res.layer_labels) == 4 and res.layer_labels[-1] == "L2 resid_post"
    # positions that are identical in both prompts carry nothing at layer 0
    untouched = [0, 1, 3, 4, 5]
    assert res.effect[0, untouched].abs().max() <= 1e-4
    # the trigger position alone restores everything at layer 0, the final stream at the end
    assert float(res.effect[0, 2]) == pytest.approx(1.0, abs=1e-4)
    assert float(res.effect[-1, -1]) == pytest.approx(1.0, abs=1e-4)
    assert res.source_positions == [2]
    assert res.handoff_layer is not None and res.handoff_layer <= 3
    d = res.to_dict()
    assert set(d) >= {"effect", "source_positions", "handoff_layer", "layer_labels"}


def test_identical_prompts_have_nothing_to_localise():
    model = tiny_bridge("ln3")
    tokens, _ = token_pair(batch=1, seq=4)
    with pytest.raises(ValueError, match="nothing to localise"):
        localise_trigger(model, tokens, tokens.clone(), metric=logit_diff(1, 2))
