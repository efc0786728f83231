"""`deceptprobe cache`: writes a store, resumes it, refuses unrelated outputs unless --force."""

from __future__ import annotations

import json

import pytest
import torch
from act_helpers import PROMPTS, make_organism
from typer.testing import CliRunner

from deceptprobe.activations import ActivationStore, collect
from deceptprobe.cli import app


@pytest.fixture(scope="module")
def organism_dir(tmp_path_factory):
    from deceptprobe.organisms.io import save

    path = tmp_path_factory.mktemp("org") / "tiny"
    save(make_organism(), path)
    return path


def _prompts(path, texts, label_offset=0):
    path.write_text(
        "\n".join(
            json.dumps({"text": t, "label": (i + label_offset) % 2}) for i, t in enumerate(texts)
        )
    )
    return path


def test_cache_cli_writes_resumes_and_refuses(organism_dir, organism, tmp_path):
    runner = CliRunner()
    prompts = _prompts(tmp_path / "p.jsonl", PROMPTS)
    out = tmp_path / "store"
    args = ["cache", str(organism_dir), "--prompts", str(prompts), "--hooks", "resid_post"]
    res = runner.invoke(app, [*args, "--out", str(out), "--json", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rows"] == len(PROMPTS) and len(summary["hooks"]) == 3
    store = ActivationStore(out)
    assert store.labels("label").tolist() == [0, 1, 0, 1, 0]
    ref = collect(organism, PROMPTS, hooks="resid_post")
    for name, value in store.load().items():
        torch.testing.assert_close(value, ref[name], rtol=0, atol=1e-5)

    # same prompts: resumed (nothing to add, nothing duplicated)
    res = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["rows"] == len(PROMPTS)

    # a different prompts file: refused, then overwritten with --force
    other = _prompts(tmp_path / "q.jsonl", PROMPTS[:3], label_offset=1)
    args2 = ["cache", str(organism_dir), "--prompts", str(other), "--hooks", "resid_post"]
    res = runner.invoke(app, [*args2, "--out", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    res = runner.invoke(app, [*args2, "--out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert ActivationStore(out).labels("label").tolist() == [1, 0, 1]

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("keep me")
    res = runner.invoke(app, [*args, "--out", str(junk)])
    assert res.exit_code == 2 and (junk / "notes.txt").exists()

    res = runner.invoke(
        app,
        [
            "cache",
            str(organism_dir),
            "--prompts",
            str(prompts),
            "--hooks",
            "resid_pst",
            "--out",
            str(tmp_path / "s2"),
        ],
    )
    assert res.exit_code == 2 and "resid_pst" in res.output and "Closest" in res.output
