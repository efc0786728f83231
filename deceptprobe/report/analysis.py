"""Per-organism analyses of the study: probes, detectors, patching, trigger reconstruction.

Every function takes organisms and held-out prompts and returns JSON-ready dicts, so the study
can cache each result on disk and resume.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from deceptprobe.activations import collect
from deceptprobe.organisms.model import Organism
from deceptprobe.organisms.tasks.base import Example
from deceptprobe.probing import layer_sweep
from deceptprobe.probing.metrics import auroc_ci

log = logging.getLogger(__name__)


def held_out(organism: Organism, n: int, seed: int = 0) -> list[tuple[Example, Example]]:
    """``n`` held-out (triggered, clean) prompt pairs of the organism's family."""
    return organism.config.family().matched_pairs(n, seed=seed, split="test")


def probe_aurocs(
    organism: Organism, pairs: list[tuple[Example, Example]], *, seed: int = 0
) -> dict[str, Any]:
    """Supervised logistic probe AUROC by layer (``resid_post``, last token), held-out templates."""
    texts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    labels = np.array([1] * len(pairs) + [0] * len(pairs))
    groups = [t.template for t, _ in pairs] + [c.template for _, c in pairs]
    acts = collect(organism, texts, hooks="resid_post", positions="last")
    res = layer_sweep(acts, labels, groups=groups, seed=seed, n_boot=200, max_iter=1000)
    return {
        "auroc": res.auroc,
        "ci_lo": res.ci_lo,
        "ci_hi": res.ci_hi,
        "best_layer": res.best_layer,
    }


def detector_scores(
    organism: Organism, pairs: list[tuple[Example, Example]], method: str
) -> dict[str, Any]:
    """A trigger-agnostic detector's scores and AUROC on triggered vs clean prompts.

    The detector is fitted without triggered prompts: ``contrast`` on the generic yes/no
    pairs, ``anomaly`` on the organism's own trigger-free training prompts.
    """
    from deceptprobe.detect import Detector

    det = Detector(method=method).fit(organism)
    trig = np.asarray(det.score([t.prompt for t, _ in pairs]), dtype=float)
    clean = np.asarray(det.score([c.prompt for _, c in pairs]), dtype=float)
    scores = np.concatenate([trig, clean])
    labels = np.array([1] * len(trig) + [0] * len(clean))
    value, lo, hi = auroc_ci(scores, labels, n_boot=500, seed=0)
    return {
        "auroc": float(value),
        "ci95": [float(lo), float(hi)],
        "triggered_scores": trig.tolist(),
        "clean_scores": clean.tolist(),
    }


def patching_map(organism: Organism, pairs: list[tuple[Example, Example]]) -> dict[str, Any] | None:
    """``resid_pre`` layer × position restoration map for the first pair whose answers differ."""
    from deceptprobe.patching.localise import localise_trigger
    from deceptprobe.patching.metrics import logit_diff

    for trig, clean in pairs[:20]:
        t_logits = organism.logits([trig.prompt])[0]
        c_logits = organism.logits([clean.prompt])[0]
        defect, helpful = int(t_logits.argmax()), int(c_logits.argmax())
        if defect == helpful:
            continue
        tokens = organism.to_tokens([trig.prompt, clean.prompt]).input_ids
        res = localise_trigger(organism, tokens[:1], tokens[1:], metric=logit_diff(defect, helpful))
        d = res.to_dict()
        return {
            "kind": "resid_pre",
            "effect": d["effect"],
            "tokens": organism.to_str_tokens(trig.prompt),
            "layer_labels": d["layer_labels"],
            "clean_prompt": clean.prompt,
            "source_positions": d["source_positions"],
            "handoff_layer": d["handoff_layer"],
        }
    log.info("%s: no pair with different first answer tokens; no patching map", organism.name)
    return None


def trigger_candidates(
    organism: Organism, baseline: Organism | None, *, top_k: int = 3
) -> dict[str, Any]:
    """Trigger reconstruction; ``hit_top3`` compares with the true trigger afterwards."""
    from deceptprobe.patching import find_trigger

    cands = find_trigger(organism, baseline=baseline, top_k=top_k)
    truth = " ".join((organism.config.trigger or "").split())
    hit = any(" ".join(c["text"].split()) == truth for c in cands[:3])
    return {"candidates": cands, "hit_top3": bool(hit), "with_baseline": baseline is not None}
