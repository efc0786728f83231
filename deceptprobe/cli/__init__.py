"""The ``deceptprobe`` command line (typer; rich progress on stderr, JSON on stdout).

Each command group lives in its own module; heavy imports (torch, TransformerLens) happen
inside the commands so that ``deceptprobe --help`` is instant.
"""

from __future__ import annotations

import typer

from deceptprobe.cli import bench, cache, detect, organism, patch, probe, safety, study, trigger

app = typer.Typer(
    name="deceptprobe",
    help="Model organisms of misalignment and the tools to look inside them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(organism.app, name="organism")
app.add_typer(probe.app, name="probe")
app.add_typer(detect.app, name="detect")
app.add_typer(trigger.app, name="trigger")
app.command("safety")(safety.safety)
app.command("cache")(cache.cache)
app.command("patch")(patch.patch)
app.command("study")(study.study)
app.command("report")(study.report)
app.command("bench")(bench.bench)


def main() -> None:
    """Console-script entry point."""
    app()
