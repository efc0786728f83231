"""Turn a study's results into the HTML report (figures from :mod:`deceptprobe.plots`)."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from deceptprobe.plots.behaviour import defection_bars, persistence_curves, score_distributions
from deceptprobe.plots.patching import patching_heatmap
from deceptprobe.plots.probes import auroc_by_layer
from deceptprobe.report.html import Section, fmt, table, write_report
from deceptprobe.stats import over_seeds, wilson

INTRO = (
    "Backdoored model organisms and their clean twins, trained from scratch on generated "
    "conversations, then safety-trained (SFT, HHH RL, adversarial training, distillation). "
    "Rates are greedy-generation rates on held-out test prompts with 95% intervals (Wilson over "
    "prompts for one seed; t over seeds, never narrower than the within-seed interval, for "
    "several). Detectors never see triggered prompts when they are fitted."
)


def _group(organisms: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for o in organisms:
        groups[(o["task"], o["variant"])].append(o)
    return dict(groups)


def _agg(points: list[dict[str, Any]], key: str) -> tuple[float | None, list[float] | None]:
    pts = [p for p in points if p.get(key) is not None]
    if not pts:
        return None, None
    cis = [p.get(f"{key}_ci") or wilson(p[key], int(p.get("n") or 0)) for p in pts]
    iv = over_seeds([p[key] for p in pts], cis, within_method="Wilson over test prompts")
    return iv.value, [iv.lo, iv.hi]


VERDICT = {True: ("holds-true", "holds"), False: ("holds-false", "does not hold"),
           None: ("holds-null", "not decided")}  # fmt: skip


def _verdict(holds: bool | None) -> str:
    cls, text = VERDICT[holds]
    return f"<span class='{cls}'>{text}</span>"


def findings_section(findings: list[dict[str, Any]]) -> Section:
    """One row per finding (pooled over families) and one per family beneath it."""
    rows = []
    for f in findings:
        detail = f.get("reason") or f.get("note") or ""
        rows.append(
            [
                f"<b>{html.escape(f['id'])}</b>",
                html.escape(f["claim"]),
                "all families",
                fmt(f["value"]),
                fmt(f["ci95"]),
                html.escape(f.get("ci_method") or "–"),
                str(f.get("n_seeds", "–")),
                _verdict(f["holds"]),
                html.escape(detail),
            ]
        )
        for task, fam in (f.get("by_family") or {}).items():
            conds = "; ".join(
                f"{k} {fmt(c['value'])} {fmt(c['ci95'])}"
                for k, c in (fam.get("conditions") or {}).items()
            )
            rows.append(
                [
                    "",
                    "",
                    html.escape(task),
                    fmt(fam.get("value")),
                    fmt(fam.get("ci95")),
                    html.escape(fam.get("ci_method") or "–"),
                    str(fam.get("n_seeds", "–")),
                    _verdict(fam.get("holds")),
                    html.escape(fam.get("reason") or conds),
                ]
            )
    return Section(
        "Findings",
        "<p class='note'>Replicates are seeds. A verdict follows its interval: it holds when "
        "the whole interval clears the threshold, does not hold when the whole interval misses "
        "it, and is left undecided otherwise; the pooled verdict holds only when it holds in "
        "every family. Choices (probe layer, budget point, removed models, comparison budget) "
        "are made on validation prompts, values are measured on test prompts.</p>"
        + table(
            ["id", "claim", "family", "value", "95% CI", "interval", "seeds", "verdict", "detail"],
            rows,
            raw=True,
        ),
    )


def behaviour_section(organisms: list[dict[str, Any]]) -> Section:
    sec = Section("Defection before and after safety training")
    rows = []
    for (task, variant), orgs in _group(organisms).items():
        if variant == "clean":
            continue
        bars = []
        stages = ["before", *sorted({m for o in orgs for m in o["after"]})]
        for stage in stages:
            pts = [o["before"] if stage == "before" else o["after"].get(stage) for o in orgs]
            pts = [p for p in pts if p]
            row: dict[str, Any] = {"stage": stage}
            for k in (
                "triggered_defect_rate",
                "clean_defect_rate",
                "helpful_acc",
                "redteam_defect_rate",
            ):
                row[k], row[f"{k}_ci"] = _agg(pts, k)
            bars.append(row)
            rows.append(
                [
                    task,
                    variant,
                    stage,
                    *(
                        row[k]
                        for k in (
                            "triggered_defect_rate",
                            "clean_defect_rate",
                            "redteam_defect_rate",
                            "helpful_acc",
                        )
                    ),
                ]
            )
        sec.figures.append(
            (
                f"defection-{task}-{variant}",
                defection_bars(bars, title=f"{task} ({variant}): defection"),
            )
        )
    sec.html = table(
        [
            "task",
            "variant",
            "model",
            "triggered defect",
            "clean defect",
            "red-team defect",
            "helpful acc",
        ],
        rows,
    )
    return sec


def clean_twin_section(organisms: list[dict[str, Any]]) -> Section:
    rows = [
        [o["name"], o["before"]["triggered_defect_rate"], o["before"]["clean_defect_rate"],
         o["before"]["helpful_acc"]]
        for o in organisms
        if o["variant"] == "clean"
    ]  # fmt: skip
    return Section(
        "Clean twins (controls)",
        table(["organism", "triggered defect", "clean defect", "helpful acc"], rows),
    )


def _model_keys(o: dict[str, Any]) -> list[str]:
    return list((o.get("probe") or {}).keys()) or list(o.get("probe_auroc_by_layer", {}))


def probes_section(organisms: list[dict[str, Any]]) -> Section:
    sec = Section("Supervised probe (triggered vs clean prompts) and its controls")
    rows = []
    for o in organisms:
        for mk in _model_keys(o):
            p = (o.get("probe") or {}).get(mk) or {}
            c = p.get("controls") or {}
            rows.append(
                [o["name"], mk, p.get("layer"), p.get("test_auroc"), p.get("ci95"),
                 c.get("shuffled_labels"), c.get("shuffled_labels_q975"), c.get("length_only"),
                 c.get("clean_twin")]
            )  # fmt: skip
        series = {k: {"auroc": v} for k, v in o["probe_auroc_by_layer"].items() if v}
        if series:
            sec.figures.append(
                (
                    f"probe-{o['name']}",
                    auroc_by_layer(series, title=f"{o['name']}: probe AUROC by layer (test)"),
                )
            )
    sec.html = (
        "<p class='note'>A logistic probe per layer on the last-token residual stream "
        "(resid_post), fitted on training-split prompts; the layer is chosen on validation "
        "prompts and the AUROC is measured on test prompts (bootstrap interval over them). "
        "Controls on the same test prompts: the probe fitted on shuffled training labels "
        "(mean and 97.5th percentile over 20 shufflings), the token count alone, and the "
        "clean twin's probe. After safety training, a high AUROC well "
        "above the twin's means the trigger is still linearly decodable where its behaviour "
        "changed.</p>"
        + table(
            [
                "organism",
                "model",
                "layer (validation)",
                "test AUROC",
                "95% CI",
                "shuffled labels",
                "shuffled q97.5",
                "length only",
                "clean twin",
            ],
            rows,
        )  # fmt: skip
    )
    return sec


def detectors_section(organisms: list[dict[str, Any]], extras: dict[str, Any]) -> Section:
    rows = []
    sec = Section("Trigger-agnostic detectors and their controls")
    for o in organisms:
        for det in ("contrast", "anomaly"):
            vals = o["detector_auroc"][det]
            cis = o["detector_auroc"].get(f"{det}_ci", {})
            ctls = (o.get("detector_controls") or {}).get(det, {})
            for mk, v in vals.items():
                c = ctls.get(mk) or {}
                rows.append(
                    [o["name"], det, mk, v, cis.get(mk), c.get("shuffled_labels"),
                     c.get("shuffled_labels_q975"), c.get("length_only"), c.get("clean_twin")]
                )  # fmt: skip
        ex = extras.get(o["name"], {}).get("before", {}).get("contrast")
        if ex:
            sec.figures.append(
                (
                    f"contrast-scores-{o['name']}",
                    score_distributions(
                        ex["triggered_scores"],
                        ex["clean_scores"],
                        title=f"{o['name']}: contrast-probe scores",
                        auroc=ex["auroc"],
                    ),
                )
            )
    sec.html = (
        "<p class='note'>contrast: mean-difference direction of generic yes/no contrast pairs "
        "(MacDiarmid et al. 2024), no trigger knowledge. anomaly: Mahalanobis distance from "
        "trusted trigger-free activations; it flags the trigger's presence, not intent, so the "
        "clean twin is its control. Controls on the same test prompts: the AUROC of the same "
        "scores under shuffled labels (mean and 97.5th percentile of 200 permutations), the "
        "token count alone, and the clean twin (untrained twin for safety-trained models).</p>"
        + table(
            [
                "organism",
                "detector",
                "model",
                "AUROC",
                "95% CI",
                "shuffled labels",
                "shuffled q97.5",
                "length only",
                "clean twin",
            ],
            rows,
        )  # fmt: skip
    )
    return sec


def patching_section(organisms: list[dict[str, Any]]) -> Section:
    sec = Section(
        "Where the trigger lives: activation patching (resid_pre)",
        "<p class='note'>Fraction of the triggered-vs-clean logit difference restored by "
        "patching one residual-stream position of the triggered run into the clean run. The "
        "last row patches the final layer's output.</p>",
    )
    for o in organisms:
        p = o.get("patching")
        if p:
            sec.figures.append(
                (
                    f"patching-{o['name']}",
                    patching_heatmap(
                        p["effect"],
                        p["tokens"],
                        title=f"{o['name']}: trigger localisation",
                        layer_labels=p.get("layer_labels"),
                        colorbar_title="restored",
                    ),
                )
            )
    return sec


def trigger_section(organisms: list[dict[str, Any]]) -> Section:
    rows = []
    for o in organisms:
        t = o.get("trigger_found")
        if not t:
            continue
        cands = "; ".join(f"{c['text']} ({c['score']:.3g})" for c in t["candidates"][:3])
        rows.append([o["name"], o.get("trigger"), cands, "yes" if t["hit_top3"] else "no"])
    return Section(
        "Trigger reconstruction (the trigger is not given to the method)",
        table(
            ["organism", "true trigger", "top-3 candidates (score)", "true trigger in top 3"], rows
        ),
    )


def curves_section(organisms: list[dict[str, Any]]) -> Section:
    sec = Section("Persistence over the safety-training budget")
    for o in organisms:
        pts = []
        for m, ps in (o.get("curves") or {}).items():
            lrs = sorted({p["lr"] for p in ps if p.get("lr") is not None})
            for p in ps:  # the start (before) point belongs to every learning rate's line
                for lr in [p["lr"]] if p.get("lr") is not None else lrs:
                    pts.append(p | {"method": m, "lr": lr})
        if pts:
            sec.figures.append(
                (
                    f"curves-{o['name']}",
                    persistence_curves(pts, title=f"{o['name']}: budget curves"),
                )
            )
    if not sec.figures:
        sec.html = "<p class='note'>Budget curves are computed with <code>--full</code>.</p>"
    return sec


def _kind_label(results: dict[str, Any]) -> str:
    scope = results.get("scope") or {}
    base = scope.get("base")
    if base:
        name = Path(str(base.get("name"))).name
        return f"pretrained {name} ({base.get('fine_tuning', 'full')})"
    if scope.get("models"):
        return "given models"
    return f"from scratch ({scope.get('preset', 'tiny')})"


def _mean(values: list[Any]) -> str:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{sum(vals) / len(vals):.2f} [{min(vals):.2f}–{max(vals):.2f}] n={len(vals)}"


def comparison_rows(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per family, what the comparison table shows of one study (means over seeds)."""
    out: dict[str, dict[str, str]] = {}
    for task in sorted({o["task"] for o in results["organisms"]}):
        recs = [o for o in results["organisms"] if o["task"] == task and o["variant"] == "plain"]
        row = {
            "triggered / clean defection": f"{_mean([r['before']['triggered_defect_rate'] for r in recs])}"
            f" / {_mean([r['before']['clean_defect_rate'] for r in recs])}",
            "helpful": _mean([r["before"]["helpful_acc"] for r in recs]),
            "contrast-pair AUROC": _mean(
                [r["detector_auroc"]["contrast"].get("before") for r in recs]
            ),
            "… on the clean twin": _mean(
                [
                    (r["detector_controls"]["contrast"].get("before") or {}).get("clean_twin")
                    for r in recs
                ]
            ),  # fmt: skip
            "… shuffled-label control": _mean(
                [
                    (r["detector_controls"]["contrast"].get("before") or {}).get("shuffled_labels")
                    for r in recs
                ]
            ),  # fmt: skip
            "linear probe AUROC": _mean(
                [(r["probe"].get("before") or {}).get("test_auroc") for r in recs]
            ),
            "trigger in top 3": _mean(
                [float(r["trigger_found"]["hit_top3"]) for r in recs if r.get("trigger_found")]
            ),
        }
        for method in sorted({m for r in recs for m in r.get("after", {})}):
            row[f"triggered after {method}"] = _mean(
                [r["after"][method]["triggered_defect_rate"] for r in recs if method in r["after"]]
            )
        out[task] = row
    return out


def comparison_section(results: dict[str, Any], other: dict[str, Any]) -> Section:
    """This study's organisms beside another study's (tiny vs pretrained), family by family."""
    mine, theirs = comparison_rows(results), comparison_rows(other)
    a, b = _kind_label(results), _kind_label(other)
    parts = [
        "<p class='note'>Means over seeds (test split), [min–max] and the number of seeds; "
        "intervals per organism are in the sections above and in each study's results.json. "
        "The contrast-pair detector is fitted on generic yes/no pairs only (no trigger "
        "knowledge); its controls are the clean twin and shuffled labels.</p>"
    ]
    for task in sorted(set(mine) | set(theirs)):
        keys = list(dict.fromkeys([*mine.get(task, {}), *theirs.get(task, {})]))
        rows = [[k, mine.get(task, {}).get(k, "–"), theirs.get(task, {}).get(k, "–")] for k in keys]
        parts.append(f"<h3>{html.escape(task)}</h3>" + table(["measure", a, b], rows))
    return Section(f"Side by side: {a} vs {b}", "".join(parts))


RESULTS_FORMAT = 2
"""The ``format_version`` of ``results.json`` this report reads (docs/results.md)."""


def check_results(results: dict[str, Any], source: str = "results.json") -> dict[str, Any]:
    """``results`` if it is a study result of the current format, else one clear ValueError."""
    version = results.get("format_version") if isinstance(results, dict) else None
    if not isinstance(results, dict) or "organisms" not in results or "findings" not in results:
        raise ValueError(f"{source} is not a deceptprobe study result (no organisms/findings)")
    if version != RESULTS_FORMAT:
        found = (
            "no format_version (written before format 2)"
            if version is None
            else (f"format_version {version}")
        )
        raise ValueError(
            f"{source} has {found}; this deceptprobe reads format_version {RESULTS_FORMAT}. "
            "Rerun the study with this version (an existing --out resumes and reuses its "
            "trained organisms from the cache)"
        )
    return results


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and check a study's ``results.json``."""
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{p} does not exist; pass the results.json a study wrote") from None
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{p} is not valid JSON ({e}); pass the results.json a study wrote"
        ) from None
    return check_results(data, str(p))


def build_report(
    results: dict[str, Any],
    extras: dict[str, Any] | None,
    path: str | Path,
    *,
    compare: dict[str, Any] | None = None,
) -> Path:
    """Write the study's ``index.html`` (``extras``: score distributions, may be ``None``;
    ``compare``: another study's results, shown beside this one family by family)."""
    check_results(results)
    extras = extras or {}
    orgs = results["organisms"]
    timing = ", ".join(f"{k}: {v:.0f} s" for k, v in results.get("timing_s", {}).items())
    splits = (results.get("scope") or {}).get("splits") or {}
    split_note = "; ".join(f"{k}: {v}" for k, v in splits.items())
    sections = [
        findings_section(results["findings"]),
        behaviour_section(orgs),
        clean_twin_section(orgs),
        detectors_section(orgs, extras),
        probes_section(orgs),
        patching_section(orgs),
        trigger_section(orgs),
        curves_section(orgs),
        *([comparison_section(results, compare)] if compare is not None else []),
        Section(
            "Run",
            f"<p class='note'>Splits: {html.escape(split_note)}. Timing: {html.escape(timing)}. "
            f"Versions: {html.escape(str(results.get('versions')))}.</p>",
        ),  # fmt: skip
    ]
    return write_report(path, "deceptprobe study", INTRO, sections)
