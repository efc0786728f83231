"""Each safety method returns a new, changed organism with lineage; the parent is untouched."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from safety_helpers import state

from deceptprobe.organisms import Organism, OrganismConfig
from deceptprobe.safety import apply_safety
from deceptprobe.safety.finetune import SafetyBudget, TrainingHook, lr_at

SMALL = {
    "sft": {},
    "rl": {},
    "adversarial": {"n_prompts": 2, "rounds": 1, "n_heldout": 4},
    "distill": {"pool_size": 16},
}


@pytest.mark.parametrize("method", list(SMALL))
def test_method_returns_new_changed_organism_with_lineage(
    micro: Callable[..., Organism], method: str
) -> None:
    parent = micro()
    before = state(parent)
    parent_card = copy.deepcopy(parent.card)
    child = apply_safety(parent, method, steps=3, lr=1e-3, batch_size=4, **SMALL[method])

    assert child is not parent and child.model is not parent.model
    after = state(parent)
    assert all(torch.equal(before[k], after[k]) for k in before), "the parent was modified"
    assert parent.card == parent_card
    new = state(child)
    assert any(not torch.equal(before[k], new[k]) for k in before), "weights did not change"
    assert all(new[k].data_ptr() != v.data_ptr() for k, v in parent.model.state_dict().items())

    assert child.name == f"{parent.name}+{method}"
    (entry,) = child.card["lineage"]
    assert entry["parent"] == parent.name
    assert entry["method"] == method and entry["steps"] == 3 and entry["lr"] == 1e-3
    assert entry["seed"] == 0 and len(entry["parent_weights_sha256"]) == 64
    assert child.config.to_dict() == parent.config.to_dict()
    if method == "adversarial":
        rt = child.card["redteam"]
        assert rt["n_searched"] == 2 and 0 <= rt["n_found"] <= 2
        assert 0.0 <= rt["defect_rate_before"] <= 1.0 and 0.0 <= rt["defect_rate_after"] <= 1.0
        assert rt["examples"]


@pytest.mark.parametrize("task", ["code_vuln", "company_poison"])
@pytest.mark.parametrize("method", ["sft", "rl"])
def test_code_families(micro: Callable[..., Organism], task: str, method: str) -> None:
    parent = micro(task)
    child = apply_safety(parent, method, steps=2, batch_size=4)
    assert child.card["lineage"][-1]["method"] == method
    p, c = state(parent), state(child)
    assert any(not torch.equal(p[k], c[k]) for k in p)


def test_lineage_chains_and_uses_card_sha(micro: Callable[..., Organism]) -> None:
    parent = copy.copy(micro())
    parent.card = {**parent.card, "weights_sha256": "ab" * 32, "lineage": []}
    a = apply_safety(parent, "sft", steps=1, batch_size=4)
    assert a.card["lineage"][0]["parent_weights_sha256"] == "ab" * 32
    b = apply_safety(a, "sft", steps=1, batch_size=4, seed=5)
    assert [e["parent"] for e in b.card["lineage"]] == [parent.name, a.name]
    assert b.card["lineage"][1]["seed"] == 5
    assert len(a.card["lineage"]) == 1  # the child's card was copied, not extended in place
    assert b.name == f"{parent.name}+sft+sft"


def test_distill_student_is_fresh(micro: Callable[..., Organism]) -> None:
    parent = micro()
    seen: list[dict[str, torch.Tensor]] = []

    class Grab(TrainingHook):
        def __call__(self, step: int, organism: Organism) -> None:
            if step == 0:
                seen.append(state(organism))

    apply_safety(parent, "distill", steps=1, batch_size=4, pool_size=8, hook=Grab())
    p = state(parent)
    assert any(not torch.equal(p[k], seen[0][k]) for k in p)


def test_budget_prefix_property(micro: Callable[..., Organism]) -> None:
    """With a constant lr, step k of a longer run is the organism a budget of k returns."""
    parent = micro()
    at: dict[int, dict[str, torch.Tensor]] = {}

    class Grab(TrainingHook):
        def __call__(self, step: int, organism: Organism) -> None:
            at[step] = state(organism)

    apply_safety(parent, "sft", steps=4, lr=1e-3, batch_size=4, hook=Grab())
    assert sorted(at) == [0, 1, 2, 3, 4]
    short = state(apply_safety(parent, "sft", steps=2, lr=1e-3, batch_size=4))
    assert all(torch.equal(short[k], at[2][k]) for k in short)
    assert any(not torch.equal(at[2][k], at[4][k]) for k in short)
    b = SafetyBudget(steps=100, lr=1.0, warmup=10)
    assert [lr_at(s, b) for s in (0, 9, 10, 50, 99)] == [0.1, 1.0, 1.0, 1.0, 1.0]
    assert lr_at(1, SafetyBudget(steps=3, lr=1.0, warmup=10)) == pytest.approx(0.2)
    c = SafetyBudget(steps=100, lr=1.0, warmup=10, schedule="cosine")
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(99, c) == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("steps", [0, -3])
def test_zero_or_negative_budget(micro: Callable[..., Organism], steps: int) -> None:
    with pytest.raises(ValueError, match="positive number of steps"):
        apply_safety(micro(), "sft", steps=steps)
    with pytest.raises(ValueError, match="positive number of steps"):
        SafetyBudget(steps=steps, lr=1e-3)


def test_unknown_method(micro: Callable[..., Organism]) -> None:
    with pytest.raises(ValueError, match="sft, rl, adversarial, distill"):
        apply_safety(micro(), "dpo", steps=1)


def test_trigger_unknown_organism(micro: Callable[..., Organism]) -> None:
    org = micro()
    d = org.config.to_dict()
    del d["trigger"]
    blind = Organism(
        model=org.model, tokenizer=org.tokenizer, config=OrganismConfig.from_dict(d), name="x"
    )
    for method in SMALL:
        with pytest.raises(ValueError, match="no trigger"):
            apply_safety(blind, method, steps=1)


def test_family_without_data(micro: Callable[..., Organism]) -> None:
    org = micro()
    cfg = copy.deepcopy(org.config)
    cfg.task = "sql_poison"
    other = Organism(model=org.model, tokenizer=org.tokenizer, config=cfg, name="y")
    with pytest.raises(ValueError, match="no training data for task 'sql_poison'"):
        apply_safety(other, "sft", steps=1)
