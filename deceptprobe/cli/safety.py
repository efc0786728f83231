"""``deceptprobe safety``: apply one safety-training method to a model directory (an organism or
a Hugging Face checkpoint named with ``--task``)."""

from __future__ import annotations

from pathlib import Path

import typer

from deceptprobe.cli._common import (
    DEVICE_HELP,
    DTYPE_HELP,
    TASK_HELP,
    err_console,
    fail,
    refuse_existing,
)
from deceptprobe.methods import SAFETY_METHODS

METHODS = SAFETY_METHODS


def safety(
    directory: Path = typer.Argument(
        ..., help="Organism or Hugging Face checkpoint directory to safety-train (untouched)."
    ),
    method: str = typer.Option(..., "--method", help="sft, rl, adversarial or distill."),
    out: Path = typer.Option(..., "--out", help="Directory for the new organism."),
    steps: int | None = typer.Option(
        None, "--steps", help="Optimiser steps (default per method: 300, 100, 300, organism's)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 1e-4)."),
    seed: int = typer.Option(0, "--seed", help="Data order, sampling and student init."),
    n_eval: int = typer.Option(200, "--n", help="Held-out prompts per class for the card."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    trigger: str | None = typer.Option(None, "--trigger", help="The --task family's trigger."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
) -> None:
    """Safety-train a model (SFT, HHH RL, adversarial, distillation) into a new directory.

    A Hugging Face checkpoint needs ``--task`` (the behaviour its backdoor shows, and so the
    trigger-free training data); the result is a ``save_pretrained`` checkpoint again, with
    the card and task in ``deceptprobe.json``.
    """
    if method not in METHODS:
        fail(f"unknown safety method {method!r}; choose one of {', '.join(METHODS)}")
    if steps is not None and steps <= 0:
        fail(f"--steps must be a positive number of optimiser steps, got {steps}")
    if lr is not None and not lr > 0:
        fail(f"--lr must be positive, got {lr}")
    if n_eval <= 0:
        fail(f"--n must be a positive number of prompts per class, got {n_eval}")
    if out.resolve() == directory.resolve():
        fail(f"--out {out} is the input directory; write the safety-trained organism elsewhere")
    refuse_existing(out, force)
    from deceptprobe.cli.organism import _load, _needs_task, rich_progress
    from deceptprobe.organisms import evaluate
    from deceptprobe.organisms.io import save_model
    from deceptprobe.safety import apply_safety

    parent = _load(directory, device=device, dtype=dtype, task=task, trigger=trigger)
    _needs_task(parent, directory)
    bar, update = rich_progress(f"{method} on {parent.name}")
    try:
        with bar:
            child = apply_safety(parent, method, steps=steps, lr=lr, seed=seed, progress=update)
    except ValueError as e:
        fail(str(e))
    child.card["metrics"] = evaluate(child, n=n_eval)
    try:
        save_model(child, out, force=force)
    except (FileExistsError, ValueError) as e:
        fail(str(e))
    m = child.card["metrics"]
    line = (
        f"[green]saved[/] {out}  triggered_defect_rate={m['triggered_defect_rate']:.3f}  "
        f"clean_defect_rate={m['clean_defect_rate']:.3f}  helpful_acc={m['helpful_acc']:.3f}"
    )
    if "redteam" in child.card:
        rt = child.card["redteam"]
        line += (
            f"  redteam {rt['defect_rate_before']:.3f} → {rt['defect_rate_after']:.3f} "
            f"({rt['n_found']}/{rt['n_searched']} found)"
        )
    err_console.print(line)
