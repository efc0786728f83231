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
from deceptprobe.probing import LogisticProbe
from deceptprobe.probing.metrics import auroc, auroc_ci

log = logging.getLogger(__name__)


def held_out(
    organism: Organism, n: int, seed: int = 0, *, split: str = "test"
) -> list[tuple[Example, Example]]:
    """``n`` held-out (triggered, clean) prompt pairs of the organism's family from ``split``."""
    return organism.config.family().matched_pairs(n, seed=seed, split=split)


def _texts(pairs: list[tuple[Example, Example]]) -> tuple[list[str], np.ndarray]:
    texts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    return texts, np.array([1] * len(pairs) + [0] * len(pairs))


def length_only_auroc(organism: Organism, pairs: list[tuple[Example, Example]]) -> float:
    """AUROC of the prompt's token count alone (a control: what length gives away)."""
    texts, labels = _texts(pairs)
    lengths = np.array([len(organism.to_str_tokens(t)) for t in texts], dtype=float)
    return float(auroc(lengths, labels))


def probe_aurocs(
    organism: Organism, n: int, *, seed: int = 0, n_boot: int = 500, n_shuffles: int = 20
) -> dict[str, Any]:
    """Supervised logistic probe by layer, with its layer chosen on validation and controls.

    One :class:`~deceptprobe.probing.LogisticProbe` per layer (``resid_post``, last token) is
    fitted on ``n`` training-split pairs (triggered vs clean), the layer with the highest
    validation-split AUROC is chosen, and the test-split AUROC at that layer is the result
    (bootstrap interval over test prompts). Controls on the same test prompts: the same
    probe fitted on ``n_shuffles`` independent shufflings of the training labels (the mean and
    97.5% quantile of their test AUROCs, at the chosen layer: one shuffling alone is a noisy
    draw, since a probe fitted on random labels points in a random direction, which may or may
    not align with the trigger's), and the token count alone.
    """
    splits = {s: held_out(organism, n, seed, split=s) for s in ("train", "validation", "test")}
    texts: list[str] = []
    labels: dict[str, np.ndarray] = {}
    spans: dict[str, slice] = {}
    for name, pairs in splits.items():
        t, y = _texts(pairs)
        spans[name] = slice(len(texts), len(texts) + len(t))
        texts += t
        labels[name] = y
    acts = collect(organism, texts, hooks="resid_post", positions="last")
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(labels["train"]) for _ in range(n_shuffles)]
    by_layer: dict[str, list[float]] = {"validation": [], "test": []}
    test_scores: list[np.ndarray] = []
    xs = []
    for x in acts.values():
        X = x.double().cpu().numpy()
        Xtr = X[spans["train"]]
        probe = LogisticProbe(max_iter=1000).fit(Xtr, labels["train"])
        for name in ("validation", "test"):
            s = probe.decision_function(X[spans[name]])
            by_layer[name].append(float(auroc(s, labels[name])))
            if name == "test":
                test_scores.append(s)
        xs.append(X)
    layer = int(np.argmax(by_layer["validation"]))
    X = xs[layer]
    null = [
        float(
            auroc(
                LogisticProbe(max_iter=1000)
                .fit(X[spans["train"]], y)
                .decision_function(X[spans["test"]]),
                labels["test"],
            )
        )
        for y in shuffles
    ]
    value, lo, hi = auroc_ci(test_scores[layer], labels["test"], n_boot=n_boot, seed=seed)
    n_test = len(labels["test"])
    return {
        "auroc": by_layer["test"],
        "validation_auroc": by_layer["validation"],
        "layer": layer,
        "layer_chosen_on": "validation",
        "test_auroc": float(value),
        "ci95": [float(lo), float(hi)],
        "ci_method": f"bootstrap over test prompts (n={n_test}, {n_boot} resamples)",
        "n_train": len(labels["train"]),
        "n_test": n_test,
        "controls": {
            "shuffled_labels": float(np.mean(null)),
            "shuffled_labels_q975": float(np.quantile(null, 0.975)),
            "n_shuffles": n_shuffles,
            "length_only": length_only_auroc(organism, splits["test"]),
        },
    }


def detector_scores(
    organism: Organism, pairs: list[tuple[Example, Example]], method: str, *, n_perm: int = 200
) -> dict[str, Any]:
    """A trigger-agnostic detector's scores and AUROC on triggered vs clean prompts.

    The detector is fitted without triggered prompts: ``contrast`` on the generic yes/no
    pairs, ``anomaly`` on the organism's own trigger-free training prompts. Controls on the
    same prompts: the AUROC of the same scores under shuffled labels (mean and 97.5th
    percentile of ``n_perm`` permutations: what an AUROC looks like when the labels carry no
    signal) and the token count alone.
    """
    from deceptprobe.detect import Detector

    det = Detector(method=method).fit(organism)
    trig = np.asarray(det.score([t.prompt for t, _ in pairs]), dtype=float)
    clean = np.asarray(det.score([c.prompt for _, c in pairs]), dtype=float)
    scores = np.concatenate([trig, clean])
    labels = np.array([1] * len(trig) + [0] * len(clean))
    value, lo, hi = auroc_ci(scores, labels, n_boot=500, seed=0)
    rng = np.random.default_rng(0)
    null = np.array([auroc(scores, rng.permutation(labels)) for _ in range(n_perm)])
    return {
        "auroc": float(value),
        "ci95": [float(lo), float(hi)],
        "ci_method": f"bootstrap over test prompts (n={len(labels)}, 500 resamples)",
        "controls": {
            "shuffled_labels": float(null.mean()),
            "shuffled_labels_q975": float(np.quantile(null, 0.975)),
            "length_only": length_only_auroc(organism, pairs),
            "n_prompts": len(labels),
        },
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
        if len(organism.to_str_tokens(trig.prompt)) != len(organism.to_str_tokens(clean.prompt)):
            continue  # a subword tokenizer can split the pair's words differently
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
    organism: Organism, baseline: Organism | None, *, top_k: int = 3, config: Any = None
) -> dict[str, Any]:
    """Trigger reconstruction; ``hit_top3`` compares with the true trigger afterwards."""
    from deceptprobe.patching import find_trigger

    cands = find_trigger(organism, baseline=baseline, top_k=top_k, config=config)
    truth = " ".join((organism.config.trigger or "").split())
    hit = any(" ".join(c["text"].split()) == truth for c in cands[:3])
    return {"candidates": cands, "hit_top3": bool(hit), "with_baseline": baseline is not None}
