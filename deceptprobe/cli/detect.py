"""``deceptprobe detect fit DIR --out DET`` and ``deceptprobe detect score DET DIR --prompts FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deceptprobe.cli._common import (
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    err_console,
    fail,
    load_model_dir,
    print_json,
    read_jsonl,
    refuse_existing,
)
from deceptprobe.methods import DETECTOR_METHODS

app = typer.Typer(
    help="Defection detectors: fit on an organism, score prompts (higher = more suspicious).",
    no_args_is_help=True,
)

METHODS = DETECTOR_METHODS


def _texts(rows: list[dict[str, Any]], path: Path) -> list[str]:
    bad = [i for i, r in enumerate(rows, 1) if not isinstance(r["text"], str)]
    if bad:
        fail(f"{path}: row {bad[0]} has a non-string 'text'")
    return [r["text"] for r in rows]


@app.command("fit")
def fit(
    directory: Annotated[
        Path, typer.Argument(help="Model directory: an organism or a Hugging Face checkpoint.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Detector folder to write.")],
    method: str = typer.Option(
        "contrast",
        "--method",
        help="contrast (generic yes/no pairs, no prompts), anomaly (trusted clean prompts) "
        "or supervised (labelled prompts).",
    ),
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="JSONL: {'text'} rows of trusted prompts (anomaly; contrast: threshold only) "
            "or {'text', 'label'} rows (supervised).",
        ),
    ] = None,
    layer: int | None = typer.Option(None, "--layer", help="Block to read (default: by rule)."),
    fpr: float = typer.Option(0.05, "--fpr", help="False-positive rate that sets the threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of default prompts and splits."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: str | None = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
) -> None:
    """Fit a defection detector on a model and save it (safetensors + JSON)."""
    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "supervised" and prompts is None:
        fail('--method supervised needs --prompts FILE.jsonl with {"text", "label"} rows')
    refuse_existing(out, force)
    texts = labels = groups = None
    if prompts is not None:
        rows = read_jsonl(prompts, key="text")
        texts = _texts(rows, prompts)
        if method == "supervised":
            missing = [i for i, r in enumerate(rows, 1) if "label" not in r]
            if missing:
                fail(f"{prompts}:{missing[0]} has no 'label' field; supervised rows need one")
            labels = [r["label"] for r in rows]
            if all("template" in r for r in rows):
                groups = [r["template"] for r in rows]
    organism = load_model_dir(directory, device=device, dtype=dtype, device_map=device_map)
    from deceptprobe.detect import Detector

    try:
        det = Detector(method, layer=layer, fpr=fpr, seed=seed).fit(
            organism, texts, labels, groups=groups
        )
        det.save(out, force=force)
    except (ValueError, TypeError) as e:
        fail(str(e))
    summary = {
        "method": method,
        "hooks": det.hooks_,
        "layer": det.layer_,
        "threshold": det.threshold,
        "out": str(out),
    }
    if json_out:
        print_json(summary)
    else:
        err_console.print(f"fitted {method} detector on {directory} → {out} ({summary['hooks']})")


@app.command("score")
def score(
    detector: Annotated[Path, typer.Argument(help="Detector folder (from `detect fit`).")],
    directory: Annotated[
        Path, typer.Argument(help="Model directory: an organism or a Hugging Face checkpoint.")
    ],
    prompts: Annotated[Path, typer.Option("--prompts", help="JSONL with {'text': str} rows.")],
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: str | None = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
) -> None:
    """Score prompts: one score per prompt in input order, higher = more suspicious."""
    texts = _texts(read_jsonl(prompts, key="text"), prompts)
    from deceptprobe.detect import Detector

    try:
        det = Detector.load(detector)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    organism = load_model_dir(directory, device=device, dtype=dtype, device_map=device_map)
    try:
        scores = det.score(texts, model=organism)
    except (ValueError, TypeError) as e:
        fail(str(e))
    out = {"scores": [float(s) for s in scores]}
    if json_out:
        print_json(out)
        return
    from rich.table import Table

    table = Table(title=f"{det.method} detector scores (threshold {det.threshold:.4g})")
    for col in ("#", "score", "flagged", "prompt"):
        table.add_column(col)
    for i, (s, t) in enumerate(zip(scores, texts, strict=True)):
        table.add_row(str(i), f"{s:.4f}", "yes" if s > det.threshold else "", t[:80])
    err_console.print(table)
