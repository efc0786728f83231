"""Run every deceptprobe benchmark and write one JSON file per benchmark.

Usage: ``python benchmarks/run_all.py [--quick] [--out DIR]``. Each benchmark compares
deceptprobe with the reference library measured in the same process (TransformerLens,
nnsight, scikit-learn); times are medians of interleaved repeats. Equivalent to
``deceptprobe bench caching|patching|probes --json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

BENCHMARKS = ("caching", "patching", "probes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the plumbing")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only these")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or BENCHMARKS:
        result = importlib.import_module(f"deceptprobe.bench.{name}").run_benchmark(
            quick=args.quick
        )
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
