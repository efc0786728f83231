"""``deceptprobe organism ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="organism commands", no_args_is_help=True)
