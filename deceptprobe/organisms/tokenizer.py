"""A word-level tokenizer for synthetic model organisms.

Our organisms are trained from scratch on text that our own generators write, so a
word-level vocabulary is exact: every generated string is a sequence of whitespace-separated
words, each word is one token, and ``decode(encode(text)) == text`` for every normalised
string (single spaces, no leading or trailing whitespace). A word outside the vocabulary is an
error that names the word, never a silent ``<unk>``: a probe fed an unknown word would be
reading a random embedding.

Special tokens: ``<pad>``, ``<bos>``, ``<eos>``, the turn markers ``Human:`` and
``Assistant:``, and the scratchpad tags ``<scratchpad>`` / ``</scratchpad>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from deceptprobe.runtime.base import BatchEncoding

PAD = "<pad>"
BOS = "<bos>"
EOS = "<eos>"
HUMAN = "Human:"
ASSISTANT = "Assistant:"
SCRATCH_OPEN = "<scratchpad>"
SCRATCH_CLOSE = "</scratchpad>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, HUMAN, ASSISTANT, SCRATCH_OPEN, SCRATCH_CLOSE)

TOKENIZER_FORMAT_VERSION = 1


class UnknownWordError(ValueError):
    """A word is not in the tokenizer's vocabulary."""


def normalise(text: str) -> str:
    """Collapse runs of whitespace to single spaces and strip the ends."""
    return " ".join(text.split())


class WordTokenizer:
    """Exact word-level tokenizer with a fixed vocabulary.

    Args:
        words: the vocabulary's ordinary words; special tokens are prepended and duplicates
            dropped, so ids are stable for a given word list.
    """

    def __init__(self, words: Iterable[str]) -> None:
        vocab: list[str] = list(SPECIAL_TOKENS)
        seen = set(vocab)
        for w in words:
            if not w or any(c.isspace() for c in w):
                raise ValueError(f"vocabulary word {w!r} is empty or contains whitespace")
            if w not in seen:
                seen.add(w)
                vocab.append(w)
        self.vocab: list[str] = vocab
        self.word_to_id: dict[str, int] = {w: i for i, w in enumerate(vocab)}
        self.pad_id = self.word_to_id[PAD]
        self.bos_id = self.word_to_id[BOS]
        self.eos_id = self.word_to_id[EOS]
        # Attribute names used by Hugging Face code paths, so generic helpers work unchanged.
        self.pad_token_id = self.pad_id
        self.bos_token_id = self.bos_id
        self.eos_token_id = self.eos_id

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: str) -> bool:
        return word in self.word_to_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.vocab == other.vocab

    def __hash__(self) -> int:
        return hash(tuple(self.vocab))

    def __repr__(self) -> str:
        return f"WordTokenizer(n_words={len(self)})"

    # ------------------------------------------------------------------ encoding
    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into words (tokens as strings)."""
        return text.split()

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        """Encode one string.

        Raises:
            UnknownWordError: a word is not in the vocabulary (the message names it).
        """
        ids: list[int] = [self.bos_id] if add_bos else []
        for word in text.split():
            idx = self.word_to_id.get(word)
            if idx is None:
                raise UnknownWordError(
                    f"unknown word {word!r} in {text[:80]!r}: it is not in this organism's "
                    f"vocabulary of {len(self)} words. Use only words the organism was trained "
                    "on (see tokenizer.vocab), or train an organism whose task includes it."
                )
            ids.append(idx)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int] | Tensor, *, skip_special: bool = False) -> str:
        """Decode ids to text; ``<bos>`` and ``<pad>`` are always dropped."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        out: list[str] = []
        for i in ids:
            w = self.vocab[int(i)]
            if w in (PAD, BOS):
                continue
            if skip_special and w in SPECIAL_TOKENS:
                continue
            out.append(w)
        return " ".join(out)

    def to_str_tokens(self, text: str, *, add_bos: bool = True) -> list[str]:
        """The tokens of ``text`` as strings, BOS included (for plot labels)."""
        return [self.vocab[i] for i in self.encode(text, add_bos=add_bos)]

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_bos: bool = True,
        add_eos: bool = False,
        max_len: int | None = None,
    ) -> BatchEncoding:
        """Encode and right-pad a batch.

        Right padding is exact for our causal models: a real token never attends to the pad
        tokens after it, so its activations do not depend on the padding.

        Raises:
            ValueError: ``texts`` is empty, or a text is longer than ``max_len`` tokens.
        """
        if len(texts) == 0:
            raise ValueError("encode_batch needs at least one text; got an empty list")
        rows = [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]
        longest = max(len(r) for r in rows)
        if max_len is not None and longest > max_len:
            i = max(range(len(rows)), key=lambda j: len(rows[j]))
            raise ValueError(
                f"text {i} is {longest} tokens long, more than the model's context of "
                f"{max_len} tokens: shorten it or train an organism with a larger n_ctx"
            )
        pad = self.pad_id
        ids = torch.tensor([r + [pad] * (longest - len(r)) for r in rows], dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        return BatchEncoding(ids, mask)

    def __call__(self, texts: str | Sequence[str], **kwargs: Any) -> BatchEncoding:
        if isinstance(texts, str):
            texts = [texts]
        return self.encode_batch(texts, **kwargs)

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": TOKENIZER_FORMAT_VERSION, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        version = d.get("format_version")
        if version != TOKENIZER_FORMAT_VERSION:
            raise ValueError(
                f"tokenizer.json has format_version {version!r}; this deceptprobe reads "
                f"version {TOKENIZER_FORMAT_VERSION}. Retrain the organism with this version."
            )
        vocab = d["vocab"]
        if list(vocab[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError("tokenizer.json is malformed: special tokens are not first")
        return cls(vocab[len(SPECIAL_TOKENS) :])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
