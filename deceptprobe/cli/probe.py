"""``deceptprobe probe sweep STORE --labels KEY [--method logistic|mean_diff] [--groups KEY] [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deceptprobe.cli._common import err_console, fail, print_json

app = typer.Typer(help="Linear probes on cached activations.", no_args_is_help=True)

METHODS = ("logistic", "mean_diff")


def _open_store(path: Path):  # noqa: ANN202 - the store type lives in deceptprobe.activations
    from deceptprobe.activations import ActivationStore

    if not path.exists():
        fail(f"activation store {path} does not exist; create one with `deceptprobe cache ...`")
    opener = getattr(ActivationStore, "open", None)
    try:
        return opener(path) if callable(opener) else ActivationStore(path)
    except (OSError, ValueError) as e:
        fail(f"cannot open activation store {path}: {e}")


@app.command("sweep")
def sweep(
    store: Annotated[
        Path, typer.Argument(help="Activation store directory (from `deceptprobe cache`).")
    ],
    labels: str = typer.Option(..., "--labels", help="Metadata key holding the two-class label."),
    method: str = typer.Option("logistic", "--method", help="logistic or mean_diff."),
    groups: str | None = typer.Option(
        None, "--groups", help="Metadata key of the prompt template; held-out templates are new."
    ),
    test_size: float = typer.Option(0.3, "--test-size", help="Fraction held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and bootstrap."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap replicates for the 95% CI."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Fit one probe per cached layer and report held-out AUROC with bootstrap 95% CIs."""
    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    from deceptprobe.probing.sweep import layer_sweep

    st = _open_store(store)
    try:
        result = layer_sweep(
            st, labels, method=method, groups=groups, test_size=test_size, seed=seed, n_boot=n_boot
        )
    except (KeyError, ValueError) as e:
        fail(str(e))
    if json_out:
        print_json(result.to_dict())
        return
    from rich.table import Table

    table = Table(
        title=f"{method} probe, held-out AUROC ({result.split} split, "
        f"{result.n_train} train / {result.n_test} test)"
    )
    for col in ("layer", "hook", "AUROC", "95% CI"):
        table.add_column(col)
    for layer, hook, a, lo, hi in zip(
        result.layers, result.hooks, result.auroc, result.ci_lo, result.ci_hi, strict=True
    ):
        mark = " *" if hook == result.best_hook else ""
        table.add_row(str(layer), hook, f"{a:.3f}{mark}", f"[{lo:.3f}, {hi:.3f}]")
    err_console.print(table)
