"""Kill a caching process mid-run (SIGKILL), resume it, and check the store row by row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from act_helpers import many_prompts

from deceptprobe.activations import ActivationStore, collect
from deceptprobe.activations.stream import cache_to_store

N = 60
HOOKS = ["resid_pre", "blocks.2.hook_resid_post"]
CHILD = """
import sys, time
import torch
torch.set_num_threads(1)
from act_helpers import make_organism, many_prompts
from deceptprobe.activations.store import ActivationStore
from deceptprobe.activations.stream import cache_to_store

append = ActivationStore.append
def slow_append(self, acts, meta):  # give the parent time to kill us mid-run
    append(self, acts, meta)
    time.sleep(0.08)
ActivationStore.append = slow_append
cache_to_store(make_organism(), many_prompts(N_ROWS), hooks=HOOK_LIST, out=sys.argv[1],
               batch_size=3, shard_rows=4, progress=False)
""".replace("N_ROWS", str(N)).replace("HOOK_LIST", repr(HOOKS))


def _committed_shards(path: Path) -> int:
    try:
        return len(json.loads((path / "index.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_and_resume_loses_and_duplicates_nothing(organism, tmp_path):
    out = tmp_path / "store"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parents[2])])}
    child = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while _committed_shards(out) < 3:
            assert child.poll() is None, "the caching child exited before it could be killed"
            assert time.monotonic() < deadline, "the caching child wrote no shards"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    committed = len(ActivationStore(out))
    assert 0 < committed < N, committed

    prompts = many_prompts(N)
    store = cache_to_store(organism, prompts, hooks=HOOKS, out=out, batch_size=3, progress=False)
    assert len(store) == N
    meta = store.metadata
    assert [m["prompt_index"] for m in meta] == list(range(N))
    fresh = collect(organism, prompts, hooks=HOOKS, batch_size=3)
    got = store.load()
    assert list(got) == list(fresh)
    for name, ref in fresh.items():
        for row in range(N):
            torch.testing.assert_close(got[name][row], ref[row], rtol=0, atol=1e-5)
