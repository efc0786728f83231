"""``deceptprobe detect ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="detect commands", no_args_is_help=True)
