"""Unit tests of trigger reconstruction on a tiny untrained organism (no training needed)."""

from __future__ import annotations

import math
import random
from functools import cache
from typing import Any

import pytest
import torch

from deceptprobe.organisms.model import ModelConfig, Organism, build_model
from deceptprobe.organisms.tokenizer import WordTokenizer
from deceptprobe.patching import find_trigger
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
from deceptprobe.runtime.decoding import CachedDecoder

WORDS = "red blue green sun moon star cat dog fish tree rock sand . ?".split()
FAST = TriggerSearchConfig(
    n_fillers=2,
    contexts=3,
    shortlist=3,
    beams=1,
    max_words=2,
    answer_tokens=3,
    pool=2,
    climb_steps=2,
    climb_proposals=2,
    controls=2,
    doses=(0.5, 1.0),
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


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_logits_of_the_last_positions_only_match_the_full_pass(keep: int) -> None:
    org = organism()
    m = CachedDecoder(org.model)
    ids = org.to_tokens(["Human: red sun cat Assistant:", "Human: dog . moon Assistant:"]).input_ids
    with torch.no_grad():
        full, kv_full = m.forward_embeds(m.embed(ids))
        part, kv_part = m.forward_embeds(m.embed(ids), keep=keep)
    assert part.shape == (2, keep, full.shape[-1])
    torch.testing.assert_close(part, full[:, -keep:], atol=1e-5, rtol=0)
    for (k1, v1), (k2, v2) in zip(kv_full, kv_part, strict=True):  # keys/values stay complete
        torch.testing.assert_close(k1, k2)
        torch.testing.assert_close(v1, v2)


@pytest.mark.parametrize("dose", [1.0, 0.5])
def test_shared_prefixes_give_the_same_first_token_distribution(
    dose: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deceptprobe.patching.phrase_scoring as ps

    scorer = PhraseScorer(organism(), None, FAST)
    ctx = make_contexts(WORDS, 2, n_fillers=3, rng=random.Random(1))
    rows = [(c, [w], at) for c in ctx for w in WORDS[:6] for at in placements(3)]
    texts = [scorer._prompt(fill(c, p, at)) for c, p, at in rows]
    spans = [ps._span(at, 1, scorer.offset) for _, _, at in rows]
    monkeypatch.setattr(ps, "_MIN_SHARED", 10**9)
    plain = scorer._first_logp(scorer.model, texts, spans, dose)
    monkeypatch.setattr(ps, "_MIN_SHARED", 2)
    assert any(b.shared for b in scorer._batches(texts, spans))
    shared = scorer._first_logp(scorer.model, texts, spans, dose)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)


def test_probe_prompts_are_the_tokenized_conversation() -> None:
    """On a word organism the id-built probe prompt is exactly ``Human: … Assistant:``
    tokenized, and a phrase's span covers its words."""
    from deceptprobe.organisms.tokenizer import ASSISTANT, HUMAN
    from deceptprobe.patching.phrase_scoring import _span

    org = organism()
    scorer = PhraseScorer(org, None, FAST)
    ctx = make_contexts(WORDS, 3, n_fillers=4, rng=random.Random(2))
    for c in ctx:
        for at in placements(4):
            units = fill(c, ["blue", "moon"], at)
            ids = scorer._prompt(units)
            assert ids == org.tokenizer.encode(" ".join([HUMAN, *units, ASSISTANT]))
            lo, hi = _span(at, 2, scorer.offset)
            assert org.tokenizer.decode(ids[lo:hi]) == "blue moon"


@pytest.mark.parametrize("with_twin", [False, True])
def test_score_shapes(with_twin: bool) -> None:
    twin = organism(seed=4) if with_twin else None
    scorer = PhraseScorer(organism(), twin, FAST)
    ctx = make_contexts(WORDS, 3, n_fillers=2, rng=random.Random(0))
    sc = scorer.score([["red"], ["blue", "moon"], ["cat"]], ctx)
    assert sc.values.shape == (3, 3)
    assert torch.isfinite(sc.values).all() and (sc.values >= 0).all()
    assert all(w in placements(2) for row in sc.where for w in row)
    values, where = scorer.phrase_scores([["red"], ["blue", "moon"]], ctx)
    assert values.shape == (2,) and len(where) == 2 and len(where[0]) == 3


def test_a_fixed_placement_is_the_only_one_tried() -> None:
    scorer = PhraseScorer(organism(), None, FAST)
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    sc = scorer.score([["red"]], ctx, where=[[(0, 1), (2, 2)]])
    assert sc.where == [[(0, 1), (2, 2)]]
    each = [scorer.score([["red"]], ctx, where=[[w, w]]).values for w in placements(2)]
    full = scorer.score([["red"]], ctx).values
    torch.testing.assert_close(full, torch.stack(each).mean(0))  # the mean over placements


def test_a_word_the_model_copies_first_scores_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    org = organism()
    scorer = PhraseScorer(org, None, FAST)
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    n, red = len(org.tokenizer), org.tokenizer.word_to_id["red"]
    for c in ctx:  # a uniform null
        scorer._nulls[(tuple(c), 1.0, id(scorer.model))] = torch.full((n,), -math.log(n))

    def says_red(m: Any, texts: Any, spans: Any, dose: float = 1.0, *_: Any) -> torch.Tensor:
        out = torch.full((len(texts), n), -30.0)
        out[:, red] = 0.0
        return out

    monkeypatch.setattr(scorer, "_first_logp", says_red)
    assert (scorer.score([["red"]], ctx).values == 0).all()  # copied: no evidence
    # log p - log q = log n, clipped at what the null (5 placements x 2 controls) can measure
    cap = math.log(len(placements(2)) * FAST.controls)
    assert cap < math.log(n)
    torch.testing.assert_close(
        scorer.score([["sun"]], ctx).values, torch.full((1, 2), cap), atol=1e-4, rtol=0
    )


def test_null_mixes_control_words_at_every_placement() -> None:
    scorer = PhraseScorer(organism(), None, FAST)
    ctx = make_contexts(WORDS, 1, n_fillers=2, rng=random.Random(0))[0]
    q = scorer._null(ctx, 1.0)
    assert q.shape == (len(organism().tokenizer),)
    torch.testing.assert_close(q.exp().sum(), torch.tensor(1.0))
    assert scorer._null(ctx, 1.0) is q  # cached


def test_a_phrase_scored_against_itself_scores_zero() -> None:
    org = organism()
    scorer = PhraseScorer(org, org, FAST)
    ctx = make_contexts(WORDS, 3, n_fillers=2, rng=random.Random(0))
    values = scorer.score([["red"], ["sun", "cat"]], ctx).values
    torch.testing.assert_close(values, torch.zeros_like(values), atol=1e-4, rtol=0)


def test_extend_tries_every_word_on_each_side() -> None:
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    search = Search(PhraseScorer(organism(), None, FAST), ctx, doses=(1.0,))
    search.add([("red",)])
    best = search.extend(("red",), WORDS, gain=0.0)
    assert best is None or (len(best) == 2 and "red" in best and best in search.scores)
    assert search.extend(("red",), WORDS, gain=1e9) is None  # nothing gains that much


def test_replaced_scores_random_words_in_each_place() -> None:
    ctx = make_contexts(WORDS, 2, n_fillers=2, rng=random.Random(0))
    search = Search(PhraseScorer(organism(), None, FAST), ctx, doses=(1.0,))
    value = search.replaced(("red", "sun"), k=2)
    assert value >= 0.0 and value == search.replaced(("red", "sun"), k=2)  # deterministic


def test_extensions_must_gain() -> None:
    assert not _keeps(11.0, 10.0, 0.15)
    assert _keeps(12.0, 10.0, 0.15)


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
