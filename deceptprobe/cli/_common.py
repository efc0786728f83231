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
