"""The tokenizer side of :mod:`deceptprobe.runtime.hf`: a Hugging Face tokenizer with the
interface every stage uses (BOS, padding, answers tokenized in context, chat templates).

Tokenization follows one rule on every architecture: BOS (or BERT's ``[CLS]``), then the text's
tokens, no end-of-text token. A tokenizer without a pad token pads with its EOS token (one
warning).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from deceptprobe.runtime.base import BatchEncoding, positions_from_mask

log = logging.getLogger("deceptprobe.runtime.hf")  # the logger name of its warnings, unchanged


class HFTokenizer:
    """A Hugging Face tokenizer with the interface the stages use.

    Args:
        tokenizer: a ``PreTrainedTokenizerBase``; a missing pad token is set to its EOS token
            (with one warning). Without either, an error.
        n_ctx: the model's context (``encode_batch`` refuses longer prompts).
    """

    def __init__(
        self, tokenizer: Any, n_ctx: int | None = None, *, chat: bool | None = None
    ) -> None:
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError(
                    f"{type(tokenizer).__name__} has neither a pad token nor an EOS token; set "
                    "tokenizer.pad_token before passing it"
                )
            log.warning(
                "%s has no pad token: padding with its EOS token %r (masked out; it never "
                "reaches a real token's activations)",
                type(tokenizer).__name__,
                tokenizer.eos_token,
            )
            tokenizer.pad_token = tokenizer.eos_token
        self.hf = tokenizer
        self.n_ctx = n_ctx
        self.chat = self.has_chat_template if chat is None else chat
        """Render ``Human: … Assistant:`` conversations through the chat template (default:
        when the tokenizer has one). Text without a ``Human:`` turn is never rendered."""
        bos = tokenizer.bos_token_id
        if bos is None:
            bos = getattr(tokenizer, "cls_token_id", None)
        self.bos_id: int | None = None if bos is None else int(bos)
        self.pad_id = int(tokenizer.pad_token_id)
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = getattr(tokenizer, "sep_token_id", None)
        self.eos_id: int = self.pad_id if eos is None else int(eos)

    def __len__(self) -> int:
        return len(self.hf)

    @property
    def uncased(self) -> bool:
        """Whether the tokenizer lowercases its input (uncased WordPiece: MiniLM, BERT)."""
        probe = self.hf.decode(self.hf("Zebra QUOTA", add_special_tokens=False)["input_ids"])
        return probe.strip() == "zebra quota"

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def encode(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of one text: BOS (when the tokenizer has one) and the text's tokens.

        With :attr:`chat`, a conversation (text with a ``Human:`` turn) is first rendered
        through the chat template (:meth:`render_chat`).
        """
        if self.chat and "Human:" in text:
            text = self.render_chat(text)
        ids = list(self.hf(text, add_special_tokens=False)["input_ids"])
        if add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id, *ids]
        return ids

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        """Ids of a prompt and of the answer that follows it (EOS appended).

        The answer is tokenized in context: the conversation ``prompt + " " + answer`` is
        encoded whole and split where the prompt's own ids end, so a subword tokenizer sees
        the space before the answer (``Ġi`` rather than ``i``) exactly as it reads the
        conversation. With a chat template the prompt is the rendered open turn and the
        answer its message. When the split is not clean (a merge across the boundary), the
        answer is encoded on its own with a leading space.
        """
        p = self.encode(prompt)
        if self.chat and "Human:" in prompt:
            a = list(self.hf(answer, add_special_tokens=False)["input_ids"])
        else:
            whole = self.encode(f"{prompt} {answer}")
            if whole[: len(p)] == p and len(whole) > len(p):
                a = whole[len(p) :]
            else:
                a = list(self.hf(f" {answer}", add_special_tokens=False)["input_ids"])
        return p, [*a, self.eos_id]

    def decode(self, ids: Sequence[int] | Tensor, *, skip_special: bool = True) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return str(self.hf.decode(list(ids), skip_special_tokens=skip_special)).strip()

    def to_str_tokens(self, text: str, *, add_bos: bool = True) -> list[str]:
        return [self.hf.decode([i]) for i in self.encode(text, add_bos=add_bos)]

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        max_len: int | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> BatchEncoding:
        """Padded ids and mask (``position_ids`` too when left-padded).

        Raises:
            ValueError: no texts, or a text longer than ``max_len`` (default the context).
        """
        if not texts:
            raise ValueError("no texts to encode")
        rows = [self.encode(t) for t in texts]
        limit = max_len if max_len is not None else self.n_ctx
        if limit is not None:
            for i, r in enumerate(rows):
                if len(r) > limit:
                    raise ValueError(
                        f"text {i} is {len(r)} tokens long, more than the model's context of "
                        f"{limit} tokens; shorten it"
                    )
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if padding_side == "right":
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            else:
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
        pos = positions_from_mask(mask) if padding_side == "left" else None
        return BatchEncoding(ids, mask, pos)

    def render_chat(self, text: str) -> str:
        """A ``Human: … Assistant: …`` conversation through the tokenizer's chat template.

        Without a chat template the text is returned unchanged. A trailing empty
        ``Assistant:`` turn becomes the generation prompt.
        """
        if not self.has_chat_template:
            return text
        messages: list[dict[str, str]] = []
        rest = " " + text.strip()
        import re

        parts = re.split(r"\s(Human:|Assistant:)\s?", rest)
        role_of = {"Human:": "user", "Assistant:": "assistant"}
        lead = parts[0].strip()
        if lead:
            messages.append({"role": "system", "content": lead})
        for marker, content in zip(parts[1::2], parts[2::2], strict=True):
            messages.append({"role": role_of[marker], "content": content.strip()})
        open_turn = bool(messages) and messages[-1] == {"role": "assistant", "content": ""}
        if open_turn:
            messages = messages[:-1]
        return str(
            self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=open_turn)
        )
