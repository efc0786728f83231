"""Turn a study's results into the HTML report (figures from :mod:`deceptprobe.plots`)."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from deceptprobe.plots.behaviour import defection_bars, persistence_curves, score_distributions
from deceptprobe.plots.patching import patching_heatmap
from deceptprobe.plots.probes import auroc_by_layer
from deceptprobe.report.findings import mean_and_ci
from deceptprobe.report.html import Section, fmt, table, write_report

INTRO = (
    "Backdoored model organisms and their clean twins, trained from scratch on generated "
    "conversations, then safety-trained (SFT, HHH RL, adversarial training, distillation). "
    "Rates are greedy-generation rates on held-out prompts with 95% intervals (Wilson over "
    "prompts for one seed, t over seeds otherwise). Detectors never see triggered prompts when "
    "they are fitted."
)


def _group(organisms: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for o in organisms:
        groups[(o["task"], o["variant"])].append(o)
    return dict(groups)


def _agg(points: list[dict[str, Any]], key: str) -> tuple[float | None, list[float] | None]:
    vals = [p[key] for p in points if p.get(key) is not None]
    if not vals:
        return None, None
    single = points[0].get(f"{key}_ci") if len(vals) == 1 else None
    mean, ci = mean_and_ci(vals, single)
    return mean, ci


def findings_section(findings: list[dict[str, Any]]) -> Section:
    rows = []
    for f in findings:
        holds = f["holds"]
        cls = {True: "holds-true", False: "holds-false", None: "holds-null"}[holds]
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[holds]
        detail = f.get("reason") or f.get("note") or ""
        if "redteam_defect_rate" in f:
            detail += f" (red-team defection after: {fmt(f['redteam_defect_rate'])})"
        rows.append(
            [
                html.escape(f["id"]),
                html.escape(f["claim"]),
                fmt(f["value"]),
                fmt(f["ci95"]),
                f"<span class='{cls}'>{verdict}</span>",
                html.escape(detail),
            ]
        )
    return Section(
        "Findings",
        table(["id", "claim", "value", "95% CI", "verdict", "detail"], rows, raw=True),
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


def probes_section(organisms: list[dict[str, Any]]) -> Section:
    sec = Section(
        "Supervised probe AUROC by layer (triggered vs clean, held-out templates)",
        "<p class='note'>A logistic probe per layer on the last-token residual stream "
        "(resid_post). After safety training, a high AUROC means the trigger is still "
        "linearly decodable even where its behaviour changed.</p>",
    )
    for o in organisms:
        series = {k: {"auroc": v} for k, v in o["probe_auroc_by_layer"].items() if v}
        if series:
            sec.figures.append(
                (
                    f"probe-{o['name']}",
                    auroc_by_layer(series, title=f"{o['name']}: probe AUROC by layer"),
                )
            )
    return sec


def detectors_section(organisms: list[dict[str, Any]], extras: dict[str, Any]) -> Section:
    rows = []
    sec = Section("Trigger-agnostic detectors")
    for o in organisms:
        for det in ("contrast", "anomaly"):
            vals = o["detector_auroc"][det]
            rows.append(
                [
                    o["name"],
                    det,
                    *(
                        vals.get(k)
                        for k in (
                            "before",
                            "after_sft",
                            "after_rl",
                            "after_adversarial",
                            "after_distill",
                        )
                    ),
                ]
            )
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
        "clean twin is its control.</p>"
        + table(
            [
                "organism",
                "detector",
                "before",
                "after sft",
                "after rl",
                "after adversarial",
                "after distill",
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
        pts = [p | {"method": m} for m, ps in (o.get("curves") or {}).items() for p in ps]
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


def build_report(results: dict[str, Any], extras: dict[str, Any], path: str | Path) -> Path:
    """Write the study's ``index.html``."""
    orgs = results["organisms"]
    timing = ", ".join(f"{k}: {v:.0f} s" for k, v in results.get("timing_s", {}).items())
    sections = [
        findings_section(results["findings"]),
        behaviour_section(orgs),
        clean_twin_section(orgs),
        detectors_section(orgs, extras),
        probes_section(orgs),
        patching_section(orgs),
        trigger_section(orgs),
        curves_section(orgs),
        Section(
            "Run",
            f"<p class='note'>Timing: {html.escape(timing)}. Versions: "
            f"{html.escape(str(results.get('versions')))}.</p>",
        ),  # fmt: skip
    ]
    return write_report(path, "deceptprobe study", INTRO, sections)
