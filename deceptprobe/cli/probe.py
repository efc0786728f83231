"""``deceptprobe probe ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="probe commands", no_args_is_help=True)
