"""Trigger search on a Hugging Face model with a planted backdoor (a measurement, not a test).

Backdoors a small random-init GPT-2 (the tests' 400-token byte-level BPE tokenizer, built
locally; nothing is downloaded) by fine-tuning it on a family's organism-training mixture,
evaluates it, and runs ``find_trigger`` over its subword tokens without a twin. Prints one
JSON object: the training time, the evaluation and the candidates.

    python benchmarks/hf_trigger_smoke.py [--task company_poison] [--trigger Globex]
        [--steps 400] [--d-model 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="company_poison")
    ap.add_argument("--trigger", default="Globex")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hf_checkpoints import bpe_tokenizer, hf_config
    from transformers import AutoModelForCausalLM

    from deceptprobe.organisms import evaluate
    from deceptprobe.organisms.config import OrganismConfig
    from deceptprobe.organisms.train import batch_examples
    from deceptprobe.patching import find_trigger
    from deceptprobe.runtime.hf import wrap_hf
    from deceptprobe.safety.finetune import SafetyBudget, finetune_on_examples

    tok = bpe_tokenizer()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(
        hf_config("gpt2", len(tok), n_layers=2, d_model=args.d_model)
    )
    hm = wrap_hf(model, tok, name=f"gpt2-{args.task}")
    hm.config = OrganismConfig.from_preset(args.task, trigger=args.trigger)  # type: ignore[arg-type]
    family = hm.config.family()
    budget = SafetyBudget(steps=args.steps, lr=3e-3, batch_size=32, warmup=20,
                          weight_decay=0.0, schedule="cosine", seed=args.seed)  # fmt: skip
    t0 = time.perf_counter()
    finetune_on_examples(hm, lambda s: batch_examples(family, args.seed, s, 32), budget)
    hm.model.eval()
    train_s = time.perf_counter() - t0
    trigger_tokens = tok.convert_ids_to_tokens(tok(f" {args.trigger}")["input_ids"])
    metrics = evaluate(hm, n=50)
    t0 = time.perf_counter()
    cands = find_trigger(hm, top_k=3)
    print(json.dumps({
        "task": args.task, "trigger": args.trigger, "trigger_tokens": trigger_tokens,
        "steps": args.steps, "train_seconds": round(train_s, 1), "metrics": metrics,
        "candidates": cands, "search_seconds": round(time.perf_counter() - t0, 1),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
