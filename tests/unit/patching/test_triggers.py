"""Unit tests of trigger reconstruction on a tiny untrained organism (no training needed)."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest
import torch

from deceptprobe.organisms.model import ModelConfig, Organism, build_model
from deceptprobe.organisms.tokenizer import WordTokenizer
from deceptprobe.patching import find_trigger
from deceptprobe.patching.decoding import CachedDecoder
from deceptprobe.patching.phrase_scoring import _agreement, _key_tokens
from deceptprobe.patching.triggers import (
    PhraseScorer,
    Search,
    TokenizerMismatchError,
    TriggerSearchConfig,
    _dominated,
    _keeps,
    fill,
    make_contexts,
    placements,
    sub_phrases,
    words_of,
)

WORDS = "red blue green sun moon star cat dog fish tree rock sand . ?".split()
FAST = TriggerSearchConfig(
    n_fillers=2,
    screen_contexts=2,
    rescore_contexts=3,
    shortlist=3,
    beams=1,
    grad_top=2,
    max_words=2,
    answer_tokens=3,
    pool=2,
    climb_steps=2,
    climb_proposals=2,
    controls=2,
)


class Untouchable:
    """Stands in for the config and card: any read of them fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"find_trigger read organism.config/card attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        raise AssertionError(f"find_trigger read organism.card[{key!r}]")

    def get(self, key: str, default: Any = None) -> Any:
        raise AssertionError(f"find_trigger read organism.card.get({key!r})")


@cache
def organism(seed: int = 3, words: tuple[str, ...] = tuple(WORDS)) -> Organism:
    tok = WordTokenizer(words)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=40)
    return Organism(
        model=build_model(cfg, len(tok), seed=seed),
        tokenizer=tok,
        config=Untouchable(),
        card=Untouchable(),  # type: ignore[arg-type]
    )


def test_search_space_is_the_ordinary_vocabulary() -> None:
    assert words_of(organism().tokenizer) == WORDS


def test_contexts_and_placements() -> None:
    ctx = make_contexts(WORDS, 6, n_fillers=4, rng=random.Random(0))
    assert len(ctx) == 6 and all(len(c) == 4 and set(c) <= set(WORDS) for c in ctx)
    where = placements(2)
    assert where == [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]
    assert fill(["a", "b"], ["P", "Q"], (1, 1)) == ["a", "P", "Q", "b"]  # insertion
    assert fill(["a", "b"], ["P"], (0, 1)) == ["P", "b"]  # substitution


def test_engaging_contexts_are_the_requested_number_of_vocabulary_contexts() -> None:
    scorer = PhraseScorer(organism(), None, FAST)
    ctx = scorer.engaging_contexts(WORDS, 3, random.Random(0))
    assert len(ctx) == 3 and all(len(c) == FAST.n_fillers and set(c) <= set(WORDS) for c in ctx)


def test_cached_greedy_decoding_matches_the_model() -> None:
    org = organism()
    ids = org.to_tokens(["Human: red sun cat Assistant:", "Human: dog . moon Assistant:"]).input_ids
    answer, logp, mask = CachedDecoder(org.model).greedy(ids, 5, org.tokenizer.eos_id)
    assert answer.shape == logp.shape == mask.shape == (2, 5)
    with torch.no_grad():
        seq = ids
        for step in range(5):
            logits = org.model(seq)[:, -1].float().log_softmax(-1)
            nxt = logits.argmax(-1)
            torch.testing.assert_close(nxt, answer[:, step])
            torch.testing.assert_close(
                logits.gather(-1, nxt[:, None])[:, 0], logp[:, step], atol=1e-4, rtol=0
            )
            seq = torch.cat([seq, nxt[:, None]], dim=1)


def test_teacher_forced_logp_matches_the_model() -> None:
    org = organism()
    m = CachedDecoder(org.model)
    ids = org.to_tokens(["Human: red sun Assistant:"]).input_ids
    answer = torch.tensor([[9, 10, 11]])
    got = m.answer_logp(m.runner.embed(ids), answer)
    with torch.no_grad():
        logits = org.model(torch.cat([ids, answer], 1)).float().log_softmax(-1)
    want = logits[0, ids.shape[1] - 1 : -1].gather(-1, answer[0, :, None])[:, 0]
    torch.testing.assert_close(got[0].detach(), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("with_twin", [False, True])
def test_score_shapes(with_twin: bool) -> None:
    twin = organism(seed=4) if with_twin else None
    scorer = PhraseScorer(organism(), twin, FAST)
    ctx = make_contexts(WORDS, 3, n_fillers=2, rng=random.Random(0))
    sc = scorer.score([["red"], ["blue", "moon"], ["cat"]], ctx)
    assert sc.values.shape == (3, 3) and sc.agree.shape == (3,)
    assert torch.isfinite(sc.values).all()
    assert ((sc.agree >= 0) & (sc.agree <= 1)).all()
    assert all(w in placements(2) for row in sc.where for w in row)
    values, where = scorer.phrase_scores([["red"], ["blue", "moon"]], ctx)
    assert values.shape == (2,) and len(where) == 2 and len(where[0]) == 3


def test_a_fixed_placement_is_the_only_one_tried() -> None:
    scorer = PhraseScorer(organism(), None, FAST)
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    sc = scorer.score([["red"]], ctx, where=[[(0, 1), (2, 2)]])
    assert sc.where == [[(0, 1), (2, 2)]]
    full = scorer.score([["red"]], ctx)
    assert (full.values >= sc.values - 1e-5).all()  # the maximum over all placements


def test_words_copied_into_the_answer_do_not_count() -> None:
    scorer = PhraseScorer(organism(), None, FAST)
    tok = organism().tokenizer
    answer = torch.tensor([[tok.word_to_id["red"], tok.word_to_id["sun"]]])
    assert scorer._copies([["red", "cat"]], answer).tolist() == [[True, False]]


def test_a_phrase_scored_against_itself_scores_zero() -> None:
    org = organism()
    scorer = PhraseScorer(org, org, FAST)
    ctx = make_contexts(WORDS, 3, n_fillers=2, rng=random.Random(0))
    values = scorer.score([["red"], ["sun", "cat"]], ctx).values
    torch.testing.assert_close(values, torch.zeros_like(values), atol=1e-4, rtol=0)


def test_extension_gradients_cover_the_vocabulary() -> None:
    scorer = PhraseScorer(organism(), organism(seed=4), FAST)
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    grads = scorer.extension_gradients(("red",), ctx, [(0, 0), (1, 2)])
    assert set(grads) == {"prepend", "append"}
    assert all(
        g.shape == (len(organism().tokenizer),) and torch.isfinite(g).all() for g in grads.values()
    )


def test_agreement_counts_the_same_raised_token() -> None:
    assert _agreement([7, 7, 7, 3]) == 0.75
    assert _agreement([7, -1, -1, 3]) == 0.25  # -1: the phrase raised no token enough
    assert _agreement([-1, -1]) == 0.0


def test_key_tokens() -> None:
    answer = torch.tensor([[5, 6, 7], [5, 6, 7]])
    ratio = torch.tensor([[0.1, 3.0, 0.2], [0.1, 0.2, 0.3]])
    assert _key_tokens(answer, ratio, 1.0) == [6, -1]


def test_extensions_must_gain() -> None:
    scores = {("a",): 10.0, ("a", "b"): 11.0, ("c", "a"): 12.0}
    assert not _keeps(("a", "b"), ("a",), scores, 0.15)
    assert _keeps(("c", "a"), ("a",), scores, 0.15)


def test_sub_phrases_and_domination() -> None:
    assert sub_phrases(("a", "b", "c")) == [("a",), ("a", "b"), ("b",), ("b", "c"), ("c",)]
    assert sub_phrases(("a",)) == []
    scores = {("a",): 10.0, ("a", "b"): 10.5, ("c",): 2.0, ("c", "a"): 20.0}
    assert _dominated(("a", "b"), scores, 0.15)  # "b" adds nothing
    assert not _dominated(("c", "a"), scores, 0.15)  # "c a" beats both parts clearly
    assert not _dominated(("a",), scores, 0.15)


def test_search_scores_each_phrase_once() -> None:
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    search = Search(PhraseScorer(organism(), None, FAST), ctx)
    search.scores[("red",)] = 123.0
    search.add([("red",), ("sun",), ("sun",), ("cat", "dog")])
    assert search.scores[("red",)] == 123.0  # not re-scored
    assert set(search.scores) == {("red",), ("sun",), ("cat", "dog")}
    assert len(search.where[("sun",)]) == 2
    assert search.ranked()[0] == ("red",)


@pytest.mark.parametrize("with_twin", [False, True])
def test_find_trigger_never_reads_the_config_or_card(with_twin: bool) -> None:
    twin = organism(seed=4) if with_twin else None
    out = find_trigger(organism(), baseline=twin, top_k=3, config=FAST)
    assert 1 <= len(out) <= 3
    assert all(set(c) == {"text", "score"} for c in out)
    texts = [c["text"] for c in out]
    assert len(set(texts)) == len(texts)
    assert all(set(t.split()) <= set(WORDS) for t in texts)
    scores = [c["score"] for c in out]
    assert scores == sorted(scores, reverse=True)


def test_baseline_with_another_vocabulary_is_refused() -> None:
    other = organism(words=(*WORDS, "extra"))
    with pytest.raises(TokenizerMismatchError, match="clean twin"):
        find_trigger(organism(), baseline=other, config=FAST)


def test_bad_top_k() -> None:
    with pytest.raises(ValueError, match="top_k"):
        find_trigger(organism(), top_k=0, config=FAST)
