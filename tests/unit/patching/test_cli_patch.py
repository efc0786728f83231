"""``deceptprobe patch``: JSON shape, atomic write, --force, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from patching_helpers import tiny_organism
from typer.testing import CliRunner

import deceptprobe.organisms.io
from deceptprobe.cli import app

CLEAN = "alpha beta gamma delta"


def _corrupt_with_other_answer() -> str:
    org = tiny_organism()
    with torch.no_grad():
        target = int(org.logits(CLEAN)[0].argmax())
        for word in ["zeta", "eta", "theta", "iota", "kappa", "mu", "nu", "xi"]:
            text = f"alpha beta gamma {word}"
            if int(org.logits(text)[0].argmax()) != target:
                return text
    raise AssertionError("no corrupt prompt with another answer in this tiny organism")


@pytest.fixture
def organism_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(
        deceptprobe.organisms.io, "load_model", lambda path, **kw: tiny_organism(), raising=False
    )
    d = tmp_path / "org"
    d.mkdir()
    return d


def _patch(*args: str):
    return CliRunner().invoke(app, ["patch", *args])


@pytest.mark.parametrize(
    ("kind", "metric", "shape"),
    [
        ("resid_pre", "logit_diff", (2, 5)),
        ("head", "defect_prob", (2, 2)),
        ("mlp_out", "logit_diff", (2, 5)),
    ],
)
def test_writes_the_contract_json(organism_dir, tmp_path, kind, metric, shape):
    out = tmp_path / "p.json"
    res = _patch(
        str(organism_dir),
        "--clean",
        CLEAN,
        "--corrupt",
        _corrupt_with_other_answer(),
        "--kind",
        kind,
        "--metric",
        metric,
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert list(data) == ["kind", "metric", "tokens", "effect", "clean_metric", "corrupt_metric"]
    assert data["kind"] == kind and data["metric"] == metric
    assert data["tokens"] == ["<bos>", "alpha", "beta", "gamma", "delta"]
    assert (len(data["effect"]), len(data["effect"][0])) == shape
    assert all(isinstance(v, float) for row in data["effect"] for v in row)
    if metric == "logit_diff":
        assert data["clean_metric"] > 0 > data["corrupt_metric"]
    else:
        assert 0 <= data["corrupt_metric"] < data["clean_metric"] <= 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_existing_out_without_force(organism_dir, tmp_path):
    out = tmp_path / "p.json"
    out.write_text("{}")
    args = [
        str(organism_dir),
        "--clean",
        CLEAN,
        "--corrupt",
        _corrupt_with_other_answer(),
        "--out",
        str(out),
    ]
    res = _patch(*args)
    assert res.exit_code == 2 and "--force" in res.output
    assert _patch(*args, "--force").exit_code == 0
    assert "effect" in json.loads(out.read_text())


@pytest.mark.parametrize(
    ("corrupt", "extra", "message"),
    [
        ("alpha beta gamma", [], "same length"),
        (CLEAN, [], "do not elicit different first answer tokens"),
        ("alpha beta gamma omega", [], "unknown word 'omega'"),
        ("alpha beta zeta delta", ["--kind", "resid_mid"], "unknown --kind"),
        ("alpha beta zeta delta", ["--metric", "loss"], "unknown --metric"),
    ],
)
def test_clear_errors(organism_dir, tmp_path, corrupt, extra, message):
    out = tmp_path / "p.json"
    res = _patch(
        str(organism_dir), "--clean", CLEAN, "--corrupt", corrupt, "--out", str(out), *extra
    )
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert not out.exists()
