"""``deceptprobe cache DIR --prompts FILE.jsonl --hooks PATTERN [--positions last|all] --out STORE``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Annotated

import typer

from deceptprobe.cli._common import (
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    err_console,
    fail,
    load_model_dir,
    print_json,
    read_jsonl,
)

_DTYPES = ("float32", "float16", "bfloat16")


def cache(
    organism_dir: Annotated[
        Path,
        typer.Argument(
            help="Model directory: an organism (`organism train`) or a Hugging Face checkpoint."
        ),
    ],
    prompts: Annotated[
        Path,
        typer.Option(
            "--prompts",
            help='JSONL, one {"text": ...} per line; every other field becomes a row label.',
        ),
    ],
    hooks: Annotated[
        str,
        typer.Option(
            "--hooks",
            help="Hook name or pattern: resid_post, 'blocks.*.hook_resid_post', "
            "blocks.2.hook_attn_out; several separated by commas.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Activation store directory to write.")],
    positions: Annotated[
        str, typer.Option("--positions", help="last (last real token), all, or an integer index.")
    ] = "last",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")
    ] = 64,
    store_dtype: Annotated[
        str, typer.Option("--store-dtype", help="Stored dtype: float32, float16 or bfloat16.")
    ] = "float32",
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_HELP)] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)] = None,
    device_map: Annotated[str | None, typer.Option("--device-map", help=DEVICE_MAP_HELP)] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite an existing --out that is not a resumable store."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout.")
    ] = False,
) -> None:
    """Cache activations of a model (organism or HF checkpoint) on a prompts file into an activation store.

    An existing --out that is a compatible store of the same prompts file is resumed where
    it stopped; anything else there is refused unless --force.
    """
    import torch

    from deceptprobe.activations.store import StoreError
    from deceptprobe.activations.stream import cache_to_store

    if store_dtype not in _DTYPES:
        fail(f"--store-dtype must be one of {', '.join(_DTYPES)}; got {store_dtype!r}")
    pos: str | int = positions
    if positions not in ("last", "all"):
        try:
            pos = int(positions)
        except ValueError:
            fail(f"--positions must be last, all or an integer; got {positions!r}")
    rows = read_jsonl(prompts)
    texts = [str(r["text"]) for r in rows]
    metadata = [{k: v for k, v in r.items() if k != "text"} for r in rows]
    organism = load_model_dir(organism_dir, device=device, dtype=dtype, device_map=device_map)
    hook_list = [h.strip() for h in hooks.split(",") if h.strip()]
    info = {"prompts_sha256": hashlib.sha256(prompts.read_bytes()).hexdigest()}
    kwargs = {
        "hooks": hook_list,
        "positions": pos,
        "out": out,
        "metadata": metadata,
        "batch_size": batch_size,
        "dtype": getattr(torch, store_dtype),
        "info": info,
        "progress": True,
    }
    existed = out.exists() and (not out.is_dir() or any(out.iterdir()))
    try:
        store = cache_to_store(organism, texts, resume=True, **kwargs)  # type: ignore[arg-type]
    except StoreError as e:
        if not force or not existed:
            fail(f"{e}. Pass --force to overwrite {out}, or choose another --out")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
        try:
            store = cache_to_store(organism, texts, resume=False, **kwargs)  # type: ignore[arg-type]
        except (StoreError, ValueError, TypeError) as e2:
            fail(str(e2))
    except (ValueError, TypeError) as e:
        fail(str(e))
    summary = {
        "store": str(out),
        "rows": len(store),
        "hooks": store.hooks,
        "positions": store.positions,
        "dtype": store_dtype,
        "shards": store.n_shards,
    }
    if json_out:
        print_json(summary)
    else:
        err_console.print(
            f"cached {summary['rows']} rows × {len(store.hooks)} hooks into {out} "
            f"({summary['shards']} shards)"
        )
