"""Tiny HF checkpoint directories (random init, local BPE tokenizer), saved once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_checkpoints import ARCHS, save_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {arch: save_checkpoint(arch, root / arch) for arch in ARCHS}
