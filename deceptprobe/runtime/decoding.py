"""Batched greedy decoding with a key/value cache, for our organisms and Hugging Face models.

``TransformerBridge`` recomputes the whole prefix for every generated token. Trigger search
decodes thousands of short answers at once, all after prompts of one length, so a key/value
cache of the prompt (the per-block functions of :class:`~deceptprobe.runtime.runner.SuffixRunner`,
which mirror the bridge's arithmetic) makes each new token cost one position. Also a
teacher-forced log-likelihood of given answers from prompt *embeddings* (how the clean twin
scores the organism's answers while trigger search climbs its probe contexts).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deceptprobe.runtime.runner import SuffixRunner


class CachedDecoder:
    """Functional forward passes with a key/value cache over a native TransformerBridge.

    Args:
        model: a ``TransformerBridge`` built by ``boot_native``.
    """

    def __init__(self, model: Any) -> None:
        self.runner = SuffixRunner(model)
        self.w_e: Float[Tensor, "d_vocab d_model"] = self.runner.embed.weight
        self.n_ctx = int(model.cfg.n_ctx)

    def _pos(self, start: int, width: int, device: torch.device) -> Int[Tensor, " pos"]:
        return torch.arange(start, start + width, device=device)

    def forward_embeds(
        self,
        x: Float[Tensor, "batch pos d_model"],
        kv: list[tuple[Tensor, Tensor]] | None = None,
        keep: int | None = None,
    ) -> tuple[Float[Tensor, "batch out_pos d_vocab"], list[tuple[Tensor, Tensor]]]:
        """Logits at the new positions, continuing from the cached keys/values ``kv``.

        ``keep``: logits of the last ``keep`` positions only. The last block's queries, its
        attention output, its MLP and the unembedding then run on those positions alone (no
        other position's output reads them); the keys and values returned are still complete.
        """
        start = 0 if kv is None else kv[0][0].shape[2]
        positions = self._pos(start, x.shape[1], x.device)
        if self.runner.pos_embed is not None:
            x = x + self.runner.pos_embed(positions).unsqueeze(0)
        new_kv: list[tuple[Tensor, Tensor]] = []
        last = len(self.runner.blocks) - 1
        for i, block in enumerate(self.runner.blocks):
            q, k, v = block.qkv(x, positions)
            if kv is not None:
                k = torch.cat([kv[i][0], k], dim=2)
                v = torch.cat([kv[i][1], v], dim=2)
            new_kv.append((k, v))
            if i == last and keep is not None and keep < x.shape[1]:
                q, x, positions = q[:, :, -keep:], x[:, -keep:], positions[-keep:]
            x = block.finish(x, block.out(block.attend(q, k, v, positions)))
        return self.runner.logits(x), new_kv

    @torch.no_grad()
    def greedy(
        self,
        tokens: Int[Tensor, "batch pos"],
        steps: int,
        eos: int,
    ) -> tuple[Int[Tensor, "batch step"], Float[Tensor, "batch step"], Float[Tensor, "batch step"]]:
        """Greedy answers: token ids, their log-probabilities and a mask (1 up to ``<eos>``).

        At most ``steps`` tokens, fewer where the model's context would overflow.
        """
        steps = min(steps, self.n_ctx - tokens.shape[1])
        if steps < 1:
            raise ValueError(
                f"probe prompts of {tokens.shape[1]} tokens leave no room for an answer in the "
                f"model's context of {self.n_ctx}; use fewer fillers or shorter phrases"
            )
        logits, kv = self.forward_embeds(self.embed(tokens), keep=1)
        last = logits[:, -1]
        ids, logps, masks = [], [], []
        alive = torch.ones(tokens.shape[0], device=tokens.device)
        for step in range(steps):
            logp = torch.log_softmax(last.float(), dim=-1)
            nxt = logp.argmax(-1)
            ids.append(nxt)
            logps.append(logp.gather(-1, nxt[:, None])[:, 0])
            masks.append(alive.clone())
            alive = alive * (nxt != eos).float()
            if step + 1 < steps and bool(alive.any()):
                logits, kv = self.forward_embeds(self.embed(nxt[:, None]), kv)
                last = logits[:, -1]
            elif step + 1 < steps:
                pad = torch.full_like(nxt, eos)
                for _ in range(steps - step - 1):
                    ids.append(pad)
                    logps.append(torch.zeros_like(logps[-1]))
                    masks.append(torch.zeros_like(alive))
                break
        return torch.stack(ids, 1), torch.stack(logps, 1), torch.stack(masks, 1)

    @staticmethod
    def expand_cache(kv: list[tuple[Tensor, Tensor]], n: int) -> list[tuple[Tensor, Tensor]]:
        """The cache of one row broadcast to ``n`` rows (no copy)."""
        return [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]

    def embed(
        self, tokens: Int[Tensor, "batch pos"], scale: Float[Tensor, "batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """Token embeddings, multiplied position by position by ``scale`` when given."""
        x = self.runner.embed(tokens)
        return x if scale is None else x * scale[..., None].to(x.dtype)

    def answer_logp(
        self, prompt_embeds: Float[Tensor, "batch pos d_model"], answer: Int[Tensor, "batch step"]
    ) -> Float[Tensor, "batch step"]:
        """Teacher-forced log-probabilities of ``answer`` after the prompt (differentiable)."""
        x = torch.cat([prompt_embeds, self.embed(answer[:, :-1])], dim=1)
        logits, _ = self.forward_embeds(x, keep=answer.shape[1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, answer[..., None])[..., 0]


class HFDecoder:
    """:class:`CachedDecoder`'s interface over a Hugging Face causal LM (:class:`HFModel`).

    The forward passes take embeddings (``inputs_embeds``; positional embeddings, BERT's
    token-type embedding and Gemma's embedding scale are the model's own) and continue from
    ``transformers``' key/value cache object.

    Args:
        model: an :class:`~deceptprobe.runtime.hf.HFModel` on one device.
    """

    def __init__(self, model: Any) -> None:
        self.hm = model
        self.model = model.model
        emb = self.model.get_input_embeddings()
        if emb is None:
            raise ValueError(f"{model.name} has no input embedding to search over")
        self.emb = emb
        self.w_e: Float[Tensor, "d_vocab d_model"] = emb.weight
        self.n_ctx = int(model.n_ctx)
        self.bert = model.arch.name == "bert"

    def forward_embeds(
        self,
        x: Float[Tensor, "batch pos d_model"],
        kv: Any = None,
        keep: int | None = None,
    ) -> tuple[Float[Tensor, "batch out_pos d_vocab"], Any]:
        """Logits at the new positions (the last ``keep`` only when given) and the grown
        cache; ``kv`` (consumed) holds the keys and values of the earlier positions."""
        b, t = x.shape[:2]
        start = 0 if kv is None else int(kv.get_seq_length())
        pos = torch.arange(start, start + t, device=x.device).expand(b, -1)
        kw: dict[str, Any] = {
            "inputs_embeds": x,
            "attention_mask": torch.ones((b, start + t), dtype=torch.long, device=x.device),
            "position_ids": pos,
            "use_cache": True,
            "logits_to_keep": keep or 0,
        }
        if self.bert:
            kw["token_type_ids"] = torch.zeros((b, t), dtype=torch.long, device=x.device)
        if kv is not None:
            kw["cache"] = kv
        out = self.model(**kw)
        logits = out.logits if keep is None else out.logits[:, -keep:]
        return logits, out.cache

    @staticmethod
    def expand_cache(kv: Any, n: int) -> Any:
        """The cache of one row repeated for ``n`` rows."""
        kv.batch_repeat_interleave(n)
        return kv

    greedy = CachedDecoder.greedy
    answer_logp = CachedDecoder.answer_logp

    def embed(
        self, tokens: Int[Tensor, "batch pos"], scale: Float[Tensor, "batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """Token embeddings, multiplied position by position by ``scale`` when given."""
        x = self.emb(tokens)
        return x if scale is None else x * scale[..., None].to(x.dtype)


def decoder_of(model: Any) -> CachedDecoder | HFDecoder:
    """The cached decoder of a model runtime: our organisms or a Hugging Face model."""
    if getattr(model, "backend", None) == "hf":
        return HFDecoder(model)
    return CachedDecoder(model.model)
