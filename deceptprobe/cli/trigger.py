"""``deceptprobe trigger ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="trigger commands", no_args_is_help=True)
