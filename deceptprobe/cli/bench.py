"""``deceptprobe bench caching|patching|probes|lora [--json]``."""

from __future__ import annotations

import importlib

import typer

from deceptprobe.cli._common import err_console, fail, print_json

BENCHMARKS = ("caching", "patching", "probes", "lora")


def bench(
    name: str = typer.Argument(..., help="caching, patching, probes or lora"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Benchmark deceptprobe against TransformerLens / nnsight / scikit-learn in one process."""
    if name not in BENCHMARKS:
        fail(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"deceptprobe.bench.{name}")
    result = module.run_benchmark()
    if json_out:
        print_json(result)
    else:
        err_console.print_json(data=result)
