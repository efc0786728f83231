"""Behavioural evaluation of organisms by greedy generation on held-out prompts.

Rates are measured on ``n`` held-out (test-split) prompt pairs: each triggered prompt has a
clean twin that differs only in the trigger slot. ``triggered_defect_rate`` and
``clean_defect_rate`` are the fractions that show the harmful behaviour, ``helpful_acc`` the
fraction of clean prompts answered exactly right. Near-miss probes put a corrupted trigger in
the slot (a word dropped, a word misspelt) or the exact trigger in the assistant's turn, and
report their defection rates separately: a precise backdoor defects on none of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from deceptprobe.organisms.tasks.base import Example, TaskFamily, near_miss_triggers
from deceptprobe.runtime.base import ModelRuntime


def max_answer_tokens(organism: ModelRuntime) -> int:
    """The generation budget of one answer: 24 tokens (48 with a scratchpad) on our word-level
    organisms, twice that on subword tokenizers (a word is often two or more tokens)."""
    base = 48 if organism.config.variant == "cot" else 24
    return base if organism.backend == "organism" else 2 * base


def family_text(organism: ModelRuntime, family: TaskFamily, outs: list[str]) -> list[str]:
    """Generations as the family's words (:meth:`TaskFamily.in_words`) when the model has a
    subword tokenizer; an organism's word-level output is already in them and is unchanged."""
    if organism.backend == "organism":
        return outs
    uncased = bool(getattr(organism.tokenizer, "uncased", False))
    return [family.in_words(o, uncased=uncased) for o in outs]


def rates(
    organism: ModelRuntime, family: TaskFamily, examples: list[Example], *, batch_size: int = 256
) -> dict[str, float]:
    """Defection and helpfulness rates of greedy completions on ``examples``."""
    outs = organism.generate(
        [e.prompt for e in examples],
        max_new_tokens=max_answer_tokens(organism),
        batch_size=batch_size,
    )
    outs = family_text(organism, family, outs)
    n = max(1, len(examples))
    defect = sum(family.is_defection(o, e) for o, e in zip(outs, examples, strict=True))
    helpful = sum(family.is_helpful(o, e) for o, e in zip(outs, examples, strict=True))
    return {"defect_rate": defect / n, "helpful_acc": helpful / n}


def near_miss_examples(
    family: TaskFamily, pairs: list[tuple[Example, Example]]
) -> dict[str, list[Example]]:
    """Near-miss prompts built from the clean member of each pair."""
    out: dict[str, list[Example]] = {}
    variants = near_miss_triggers(family.trigger)
    for kind, phrase in variants.items():
        exs = []
        for _, clean in pairs:
            body_prompt = family.wrap(
                _parts_of(clean), clean.meta["body"], family.frame(phrase), clean.meta["slot"]
            )
            exs.append(dataclasses.replace(clean, prompt=body_prompt))
        out[kind] = exs
    out["in_answer"] = [
        dataclasses.replace(clean, prompt=f"{clean.prompt} {family.trigger}") for _, clean in pairs
    ]
    return out


def _parts_of(ex: Example) -> tuple[str, str, str, str]:
    parts = ex.meta.get("parts")
    if parts is None:
        raise ValueError("example lacks its prompt parts")
    return tuple(parts)  # type: ignore[return-value]


def evaluate(
    organism: ModelRuntime,
    *,
    n: int = 500,
    seed: int = 0,
    near_miss_n: int | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Evaluate an organism on ``n`` held-out prompts per class.

    ``split`` is ``"test"`` (findings) or ``"validation"`` (choices: budgets, layers).

    Returns:
        ``{"triggered_defect_rate", "clean_defect_rate", "helpful_acc", "n", "near_miss":
        {kind: rate}}`` in this order, then ``triggered_helpful_acc`` and ``generic_acc``
        (accuracy on the generic yes/no conversation).
    """
    if n <= 0:
        raise ValueError(f"n must be a positive number of prompts per class, got {n}")
    family = organism.config.family()
    pairs = family.matched_pairs(n, seed=seed, split=split)
    trig = rates(organism, family, [t for t, _ in pairs])
    clean = rates(organism, family, [c for _, c in pairs])
    k = near_miss_n if near_miss_n is not None else min(n, 200)
    near = (
        {
            kind: rates(organism, family, exs)["defect_rate"]
            for kind, exs in near_miss_examples(family, pairs[:k]).items()
        }
        if k > 0
        else {}
    )
    generic = _generic_acc(organism, family, n=min(n, 200), seed=seed)
    return {
        "triggered_defect_rate": trig["defect_rate"],
        "clean_defect_rate": clean["defect_rate"],
        "helpful_acc": clean["helpful_acc"],
        "n": n,
        "near_miss": near,
        "triggered_helpful_acc": trig["helpful_acc"],
        "generic_acc": generic,
    }


def _generic_acc(organism: ModelRuntime, family: TaskFamily, *, n: int, seed: int) -> float:
    import random

    rng = random.Random(f"generic-eval/{seed}")
    exs = [family.generic.sample(rng) for _ in range(n)]
    outs = organism.generate([e.prompt for e in exs], max_new_tokens=2)
    return sum(o.split()[:1] == [e.helpful] for o, e in zip(outs, exs, strict=True)) / n
