"""``deceptprobe detect fit|score``: JSON output in input order, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deceptprobe.cli import app
from deceptprobe.detect import Detector

runner = CliRunner()


def _flat(res) -> str:  # noqa: ANN001 - rich wraps long error lines
    return " ".join(res.output.split())


def _jsonl(path, rows):  # noqa: ANN001, ANN202
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("method", ["contrast", "anomaly", "supervised"])
def test_fit_then_score_json(method, organism_dir, organism, labelled, tmp_path):
    prompts, labels, templates = labelled
    args = ["detect", "fit", str(organism_dir), "--out", str(tmp_path / "det"), "--method", method]
    if method == "supervised":
        rows = [
            {"text": p, "label": int(y), "template": t}
            for p, y, t in zip(prompts, labels, templates, strict=True)
        ]
        args += ["--prompts", str(_jsonl(tmp_path / "train.jsonl", rows))]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["method"] == method
    score_file = _jsonl(tmp_path / "score.jsonl", [{"text": p} for p in prompts[:7]])
    res = runner.invoke(
        app,
        [
            "detect",
            "score",
            str(tmp_path / "det"),
            str(organism_dir),
            "--prompts",
            str(score_file),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == ["scores"] and len(out["scores"]) == 7
    expected = Detector.load(tmp_path / "det", model=organism).score(prompts[:7])
    np.testing.assert_allclose(out["scores"], expected, atol=1e-9)
    # existing --out is refused without --force
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "already exists" in _flat(res)


def test_cli_errors(organism_dir, labelled, tmp_path):
    prompts, _, _ = labelled
    det = tmp_path / "det"
    res = runner.invoke(
        app, ["detect", "fit", str(organism_dir), "--out", str(det), "--method", "supervised"]
    )
    assert res.exit_code == 2 and "--prompts" in _flat(res)
    unlabelled = _jsonl(tmp_path / "u.jsonl", [{"text": p} for p in prompts[:4]])
    res = runner.invoke(
        app,
        [
            "detect",
            "fit",
            str(organism_dir),
            "--out",
            str(det),
            "--method",
            "supervised",
            "--prompts",
            str(unlabelled),
        ],
    )
    assert res.exit_code == 2 and "label" in _flat(res)
    one_class = _jsonl(tmp_path / "o.jsonl", [{"text": p, "label": 1} for p in prompts[:6]])
    res = runner.invoke(
        app,
        [
            "detect",
            "fit",
            str(organism_dir),
            "--out",
            str(det),
            "--method",
            "supervised",
            "--prompts",
            str(one_class),
        ],
    )
    assert res.exit_code == 2 and "two classes" in _flat(res)
    res = runner.invoke(
        app, ["detect", "fit", str(organism_dir), "--out", str(det), "--method", "magic"]
    )
    assert res.exit_code == 2 and "unknown --method" in _flat(res)
    res = runner.invoke(
        app,
        [
            "detect",
            "score",
            str(tmp_path / "nope"),
            str(organism_dir),
            "--prompts",
            str(unlabelled),
        ],
    )
    assert res.exit_code == 2 and "not a detector folder" in _flat(res)
    res = runner.invoke(app, ["detect", "fit", str(tmp_path / "no-org"), "--out", str(det)])
    assert res.exit_code == 2 and "organism directory" in _flat(res)
