"""``deceptprobe safety``: bad input is refused clearly; a run writes a loadable organism."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deceptprobe.cli import app
from deceptprobe.organisms import Organism, load
from deceptprobe.organisms.io import save

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stderr


@pytest.fixture
def org_dir(micro: Callable[..., Organism], tmp_path: Path) -> Path:
    return save(micro(), tmp_path / "parent")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "dpo"], "unknown safety method 'dpo'"),
        (["--method", "sft", "--steps", "0"], "positive"),
        (["--method", "sft", "--steps", "-2"], "positive"),
        (["--method", "sft", "--lr", "0"], "--lr must be positive"),
    ],
)
def test_bad_input(org_dir: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    code, err = run("safety", str(org_dir), *extra, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()


def test_out_equal_to_input_is_refused(org_dir: Path) -> None:
    before = (org_dir / "model.safetensors").read_bytes()
    for out in (str(org_dir), str(org_dir / ".." / org_dir.name)):
        code, err = run("safety", str(org_dir), "--method", "sft", "--out", out, "--force")
        assert code == 2 and "input directory" in err
    assert (org_dir / "model.safetensors").read_bytes() == before


def test_existing_out_needs_force(org_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    code, err = run("safety", str(org_dir), "--method", "sft", "--out", str(tmp_path / "o"))
    assert code == 2 and "--force" in err


def test_missing_input(tmp_path: Path) -> None:
    code, err = run(
        "safety", str(tmp_path / "nope"), "--method", "sft", "--out", str(tmp_path / "o")
    )
    assert code == 2 and "not an organism" in err


def test_run_writes_organism_with_lineage_and_metrics(org_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "child"
    code, err = run(
        "safety", str(org_dir), "--method", "sft", "--steps", "2", "--n", "4", "--out", str(out)
    )
    assert code == 0, err
    child = load(out)
    parent_card = json.loads((org_dir / "card.json").read_text())
    (entry,) = child.card["lineage"]
    assert entry["parent_weights_sha256"] == parent_card["weights_sha256"]
    assert entry["method"] == "sft" and entry["steps"] == 2
    assert {"triggered_defect_rate", "clean_defect_rate", "helpful_acc"} <= set(
        child.card["metrics"]
    )
    assert child.name == f"{parent_card['name']}+sft"
