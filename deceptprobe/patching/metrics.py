"""Patching metrics: scalar summaries of the next-token logits, one value per prompt.

A patching metric maps the logits at the scored (final) position, ``[batch, d_vocab]``, to one
number per batch row, ``[batch]``. :func:`~deceptprobe.patching.patch.patch_sweep` averages it
over the batch, so a result equals TransformerLens's ``get_act_patch_*`` called with the metric
``lambda logits: metric(logits[:, -1]).mean()``.

The standard choices (Wang et al. 2022, "Interpretability in the Wild"; Zhang & Nanda 2024,
"Towards Best Practices of Activation Patching") are the logit difference between the answer
the clean run gives and the one the corrupt run gives, which is linear in the residual stream
after the final norm and does not saturate, and the probability of the clean answer, which
does. :class:`Normalised` rescales either so 0 means "as corrupt" and 1 "as clean".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

Metric = Callable[[Float[Tensor, "batch d_vocab"]], Float[Tensor, " batch"]]
"""Final-position logits ``[batch, d_vocab]`` -> one value per row ``[batch]``."""


@dataclass(frozen=True)
class LogitDiff:
    """``logits[target] - logits[baseline]`` per row."""

    target: int
    baseline: int

    def __call__(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
        return logits[..., self.target] - logits[..., self.baseline]


@dataclass(frozen=True)
class TokenProb:
    """Softmax probability of ``token`` per row."""

    token: int

    def __call__(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
        return torch.softmax(logits.float(), dim=-1)[..., self.token]


@dataclass(frozen=True)
class Normalised:
    """``(metric - corrupt) / (clean - corrupt)``: 0 = corrupt behaviour, 1 = clean behaviour."""

    metric: Metric
    clean: float
    corrupt: float

    def __post_init__(self) -> None:
        if self.clean == self.corrupt:
            raise ValueError(
                f"cannot normalise: the metric is {self.clean} on both the clean and the corrupt "
                "run, so there is no effect to recover; choose prompts whose answers differ"
            )

    def __call__(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
        return (self.metric(logits) - self.corrupt) / (self.clean - self.corrupt)


def logit_diff(target_token: int, baseline_token: int) -> LogitDiff:
    """Metric: logit of ``target_token`` minus logit of ``baseline_token``."""
    return LogitDiff(int(target_token), int(baseline_token))


def token_prob(token: int) -> TokenProb:
    """Metric: softmax probability of ``token``."""
    return TokenProb(int(token))


def normalised(metric: Metric, *, clean: float, corrupt: float) -> Normalised:
    """Metric rescaled so the corrupt run scores 0 and the clean run 1."""
    return Normalised(metric, float(clean), float(corrupt))


def check_metric_output(values: object, rows: int) -> Float[Tensor, " rows"]:
    """``values`` as a ``[rows]`` tensor, or a ValueError saying what a metric must return."""
    if not isinstance(values, Tensor):
        raise ValueError(
            f"a patching metric must return a tensor with one value per batch row; got "
            f"{type(values).__name__}"
        )
    if values.shape != (rows,):
        raise ValueError(
            f"a patching metric must return one scalar per batch row, shape ({rows},), but it "
            f"returned shape {tuple(values.shape)}; metrics take logits [batch, d_vocab] at the "
            "scored position and must not average over the batch (patch_sweep does that)"
        )
    return values
