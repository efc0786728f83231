"""``deceptprobe trigger find DIR [--baseline CLEAN_DIR] [--top K] [--json]``.

Trigger reconstruction (:func:`deceptprobe.patching.find_trigger`): ranked candidate trigger
phrases found from the model, its tokenizer and the optional clean twin only; the trigger
recorded in the organism's config or card is never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deceptprobe.cli._common import DEVICE_HELP, DTYPE_HELP, err_console, fail, print_json

app = typer.Typer(help="Backdoor trigger reconstruction.", no_args_is_help=True)


def _load(directory: Path, what: str, device: str | None = None, dtype: str | None = None) -> Any:
    if not directory.is_dir():
        fail(f"{what} directory {directory} does not exist")
    from deceptprobe.cli._common import load_model_dir

    return load_model_dir(directory, device=device, dtype=dtype)


@app.command("find")
def find(
    directory: Annotated[
        Path, typer.Argument(help="Organism or Hugging Face checkpoint directory to search.")
    ],
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Its clean twin (same task, trigger and seed)."),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many candidates to return.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    vocab_limit: Annotated[
        int | None,
        typer.Option(
            "--vocab-limit",
            help="Search only the first N vocabulary tokens (large subword vocabularies).",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_HELP)] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)] = None,
) -> None:
    """Rank candidate trigger phrases of a model (best first).

    On a Hugging Face checkpoint the search runs over vocabulary tokens; a candidate is a
    token sequence, shown as its decoded text (``tokens`` in the JSON).
    """
    if top < 1:
        fail(f"--top must be at least 1, got {top}")
    if vocab_limit is not None and vocab_limit < 2:
        fail(f"--vocab-limit must be at least 2 tokens, got {vocab_limit}")
    organism = _load(directory, "organism", device, dtype)
    twin = _load(baseline, "baseline", device, dtype) if baseline is not None else None

    from deceptprobe.patching import find_trigger
    from deceptprobe.patching.triggers import TokenizerMismatchError, TriggerSearchConfig

    try:
        with err_console.status("searching the vocabulary for a trigger ..."):
            cfg = TriggerSearchConfig(vocab_limit=vocab_limit)
            candidates = find_trigger(organism, baseline=twin, top_k=top, config=cfg)
    except TokenizerMismatchError as e:
        fail(f"--baseline {baseline}: {e}")
    except ValueError as e:
        fail(str(e))
    if as_json:
        print_json({"candidates": candidates})
        return
    from rich.table import Table

    table = Table(title=f"trigger candidates for {directory}")
    table.add_column("rank", justify="right")
    table.add_column("phrase")
    table.add_column("score", justify="right")
    for i, c in enumerate(candidates, 1):
        table.add_row(str(i), c["text"], f"{c['score']:.3f}")
    err_console.print(table)
