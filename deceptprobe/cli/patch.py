"""``deceptprobe patch DIR --clean TEXT --corrupt TEXT [--kind K] [--metric M] --out FILE.json``.

Convention: ``--clean`` is the run whose behaviour is restored by patching (the triggered
prompt, on which a backdoored organism defects) and ``--corrupt`` is the run that is patched
(the trigger-free prompt). The scored tokens need no task knowledge: the "defection" token is
the model's greedy first answer token on ``--clean``, the "helpful" token its greedy first
answer token on ``--corrupt``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deceptprobe.cli._common import (
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    err_console,
    fail,
    load_model_dir,
    refuse_existing,
)

if TYPE_CHECKING:
    from deceptprobe.runtime.base import ModelRuntime

KINDS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head")
METRICS = ("logit_diff", "defect_prob")


def patch(
    directory: Annotated[
        Path, typer.Argument(help="Model directory: an organism or a Hugging Face checkpoint.")
    ],
    clean: Annotated[
        str, typer.Option("--clean", help="Prompt whose behaviour is restored (triggered).")
    ],
    corrupt: Annotated[
        str, typer.Option("--corrupt", help="Prompt that is patched (trigger-free).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output JSON file.")],
    kind: Annotated[
        str, typer.Option("--kind", help="resid_pre, resid_post, attn_out, mlp_out or head.")
    ] = "resid_pre",
    metric: Annotated[
        str, typer.Option("--metric", help="logit_diff or defect_prob.")
    ] = "logit_diff",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_HELP)] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)] = None,
    device_map: Annotated[str | None, typer.Option("--device-map", help=DEVICE_MAP_HELP)] = None,
) -> None:
    """Activation patching of one clean/corrupt prompt pair, written as JSON."""
    if kind not in KINDS:
        fail(f"unknown --kind {kind!r}; choose one of {', '.join(KINDS)}")
    if metric not in METRICS:
        fail(f"unknown --metric {metric!r}; choose one of {', '.join(METRICS)}")
    refuse_existing(out, force)
    if not directory.is_dir():
        fail(f"model directory {directory} does not exist")
    organism = load_model_dir(directory, device=device, dtype=dtype, device_map=device_map)
    try:
        result = run_patch(organism, clean, corrupt, kind=kind, metric=metric)
    except ValueError as e:
        fail(str(e))
    write_json_atomic(out, result)
    err_console.print(f"wrote {out}")


def run_patch(
    organism: ModelRuntime, clean: str, corrupt: str, *, kind: str, metric: str
) -> dict[str, Any]:
    """The ``patch`` command's JSON for an organism and a prompt pair."""
    import torch

    from deceptprobe.patching.metrics import logit_diff, token_prob
    from deceptprobe.patching.patch import metric_of_run, patch_sweep

    clean_ids = organism.to_tokens(clean).input_ids  # an unknown word raises a ValueError
    corrupt_ids = organism.to_tokens(corrupt).input_ids
    if clean_ids.shape[1] != corrupt_ids.shape[1]:
        raise ValueError(
            f"--clean and --corrupt must tokenize to the same length, got {clean_ids.shape[1]} "
            f"and {corrupt_ids.shape[1]} tokens; use length-matched prompts (as "
            "`deceptprobe organism prompts` writes) or reword the shorter one"
        )
    with torch.no_grad():
        defect = int(organism.logits(clean)[0].argmax())
        helpful = int(organism.logits(corrupt)[0].argmax())
    if defect == helpful:
        word = organism.tokenizer.decode([defect])
        raise ValueError(
            f"the prompts do not elicit different first answer tokens (both start with "
            f"{word!r}), so there is no behaviour to localise; check that --clean holds the "
            "trigger and --corrupt does not"
        )
    fn = logit_diff(defect, helpful) if metric == "logit_diff" else token_prob(defect)
    sweep_kind = "head_all_pos" if kind == "head" else kind
    effect = patch_sweep(organism, clean_ids, corrupt_ids, kind=sweep_kind, metric=fn)
    return {
        "kind": kind,
        "metric": metric,
        "tokens": organism.to_str_tokens(clean),
        "effect": effect.float().cpu().tolist(),
        "clean_metric": metric_of_run(organism, clean_ids, fn),
        "corrupt_metric": metric_of_run(organism, corrupt_ids, fn),
    }


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
