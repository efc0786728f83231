"""``--device`` and ``--dtype``: parsed once, checked against the machine, one clear error each."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A ``torch.device`` that exists on this machine (``None``: CUDA when present, else CPU).

    Raises:
        ValueError: an unparsable device, CUDA asked for without CUDA, or a GPU index the
            machine does not have.
    """
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"--device {device!r} is not a device ({e}); use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device} asks for CUDA, but this machine has no CUDA device "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), numbered 0..{torch.cuda.device_count() - 1}"
            )
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"--device {device!r} is not supported; use cpu, cuda or cuda:N") from None
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The torch dtype for ``--dtype`` (``None`` keeps the checkpoint's own), checked on ``device``.

    Raises:
        ValueError: an unknown dtype name, or one the device cannot run (tried with a tiny
            matmul and LayerNorm, the operations every transformer needs).
    """
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        dt = DTYPES[dtype]
    else:
        dt = dtype
    if dt not in DTYPES.values():
        raise ValueError(f"dtype {dt} is not one of {', '.join(DTYPES)}")
    if device.type == "cuda" and dt == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--dtype bfloat16 is not supported by {device}; use float16 or float32")
    try:
        x = torch.ones(2, 4, dtype=dt, device=device)
        torch.nn.functional.layer_norm(x @ x.T, (2,))
    except (RuntimeError, TypeError) as e:
        name = str(dt).removeprefix("torch.")
        raise ValueError(
            f"--dtype {name} cannot run on {device} ({e}); use --dtype float32"
        ) from None
    return dt
