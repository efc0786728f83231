"""Saving and loading detectors: ``detector.json`` (parameters, metadata) + ``detector.safetensors``.

Never pickle: the fitted state of every method is a handful of tensors (directions, Gaussian
parameters, probe weights) and JSON-able metadata. ``format_version`` guards against files
written by an incompatible version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from deceptprobe.detect.detector import Detector
    from deceptprobe.runtime.base import ModelLike

FORMAT_VERSION = 1
JSON_NAME, TENSORS_NAME = "detector.json", "detector.safetensors"
PARAM_NAMES: tuple[str, ...] = (
    "method", "layer", "hook", "fpr", "n_trusted", "seed", "batch_size", "shrinkage", "combine",
    "C", "max_iter",
)  # fmt: skip


def model_info(model: ModelLike) -> dict[str, Any]:
    """Kind, name and a weights fingerprint of the model a detector was fitted on."""
    from deceptprobe.activations.collect import model_identity
    from deceptprobe.organisms.model import Organism

    kind = "organism" if isinstance(model, Organism) else type(model).__name__
    try:
        identity = model_identity(model)
    except Exception:  # a fingerprint is informative only
        identity = None
    return {"kind": kind, "name": getattr(model, "name", None), "identity": identity}


def _state(det: Detector) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "params": {k: getattr(det, k) for k in PARAM_NAMES},
        "hooks": det.hooks_,
        "layer": det.layer_,
        "n_layers": det.n_layers_,
        "d_model": det.d_model_,
        "threshold": det.threshold_,
        "threshold_source": det.threshold_source_,
        "model": det.model_info_,
    }
    tensors: dict[str, torch.Tensor] = {}
    if det.method == "contrast":
        fit = det.contrast_
        meta["pairs"] = det.pairs_.to_dict()
        meta["contrast"] = {
            "hooks": fit.hooks,
            "loo_accuracy": fit.loo_accuracy,
            "layer": fit.layer,
            "selected_by": fit.selected_by,
        }
        tensors = {"directions": fit.directions, "midpoints": fit.midpoints}
    elif det.method == "anomaly":
        m = det.mahalanobis_
        tensors = {
            "location": m.location_,
            "precision": m.precision_,
            "shrinkage": m.shrinkage_,
            "score_mean": m.score_mean_,
            "score_std": m.score_std_,
        }
    else:
        p = det.probe_
        meta["supervised"] = {"classes": p.classes_.tolist(), "sweep": det.sweep_}
        tensors = {"coef": torch.from_numpy(p.coef_), "intercept": torch.from_numpy(p.intercept_)}
    return meta, {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save(det: Detector, path: Path, *, force: bool = False) -> Path:
    """Write the detector folder atomically (temporary sibling, then rename)."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass force=True (--force) to overwrite it")
    meta, tensors = _state(det)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        save_file(tensors, str(tmp / TENSORS_NAME), metadata={"format": "pt"})
        (tmp / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(cls: type[Detector], path: Path) -> Detector:
    """Rebuild a fitted detector from a folder written by :func:`save`.

    Raises:
        FileNotFoundError: the folder or one of its two files is missing.
        ValueError: the file is from an incompatible version, or malformed.
    """
    from deceptprobe.probing.anomaly import MahalanobisDetector
    from deceptprobe.probing.contrast import ContrastDirections, ContrastPairs
    from deceptprobe.probing.linear import LogisticProbe

    missing = [n for n in (JSON_NAME, TENSORS_NAME) if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a detector folder (missing {', '.join(missing)}); create one with "
            "Detector(...).fit(model).save(path) or `deceptprobe detect fit`"
        )
    try:
        meta = json.loads((path / JSON_NAME).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / JSON_NAME} is not valid JSON ({e})") from e
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path / JSON_NAME} has format_version {version!r}, but this deceptprobe reads "
            f"detector files of version {FORMAT_VERSION}: the file is from an incompatible "
            "version; refit the detector with this version"
        )
    t = load_file(str(path / TENSORS_NAME))
    try:
        det = cls(**meta["params"])
        det.hooks_ = list(meta["hooks"])
        det.layer_ = meta["layer"]
        det.n_layers_, det.d_model_ = int(meta["n_layers"]), int(meta["d_model"])
        det.threshold_ = float(meta["threshold"])
        det.threshold_source_ = meta.get("threshold_source")
        det.model_info_ = meta.get("model", {})
        if det.method == "contrast":
            c = meta["contrast"]
            det.pairs_ = ContrastPairs._from_dict(meta["pairs"], str(path / JSON_NAME))
            det.pairs = det.pairs_
            det.contrast_ = ContrastDirections(
                hooks=list(c["hooks"]),
                directions=t["directions"],
                midpoints=t["midpoints"],
                loo_accuracy=[float(a) for a in c["loo_accuracy"]],
                layer=int(c["layer"]),
                selected_by=c["selected_by"],
            )
        elif det.method == "anomaly":
            m = MahalanobisDetector(
                shrinkage=det.shrinkage, combine=det.combine, random_state=det.seed
            )
            m.location_, m.precision_ = t["location"], t["precision"]
            m.shrinkage_, m.score_mean_, m.score_std_ = (
                t["shrinkage"], t["score_mean"], t["score_std"]
            )  # fmt: skip
            m.n_layers_, m.n_features_in_ = int(t["location"].shape[0]), int(t["location"].shape[1])
            det.mahalanobis_ = m
        else:
            p = LogisticProbe(C=det.C, max_iter=det.max_iter)
            p.coef_, p.intercept_ = t["coef"].numpy(), t["intercept"].numpy()
            p.classes_ = np.asarray(meta["supervised"]["classes"])
            p.n_features_in_ = int(p.coef_.shape[1])
            det.probe_, det.sweep_ = p, meta["supervised"].get("sweep")
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is a malformed detector folder ({e!r}); refit and save it") from e
    return det
