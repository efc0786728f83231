"""An on-disk activation dataset: safetensors shards, a JSON index, resumable streaming writes.

Layout of a store directory::

    index.json                 format_version, model_id, hooks, positions, dtype, d_model,
                               shapes, n_rows, info, shards: [{name, rows, sha256, meta_sha256}]
    shard-000000.safetensors   one tensor per hook, rows along dim 0
    shard-000000.jsonl         one JSON object (metadata / labels) per row

Every file is written to a temporary name and moved into place with ``os.replace``; the index is
rewritten the same way after each shard, and only then does the shard count. A process killed at
any moment therefore leaves a store whose index names complete shards only: reopening discards
anything the index does not name, ``len(store)`` says where to resume, and no committed row is
lost or duplicated. Reads verify each shard's sha256, so a corrupt or truncated shard is an
error that names it, never silently wrong activations.

Writes are overlapped with compute: :meth:`ActivationStore.append` only buffers rows; full
shards go through a bounded queue to a background writer thread, so the model keeps running
while the disk works, and memory stays bounded by a few shards whatever the number of prompts.
Nothing is pickled: tensors are safetensors, metadata is JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from deceptprobe.activations.shards import (
    ShardWriter,
    StoreError,
    read_meta,
    read_shard,
    write_atomic,
    write_shard,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX = "index.json"
_SHARD_RE = re.compile(r"^shard-(\d{6})\.(safetensors|jsonl)$")
__all__ = ["ActivationStore", "StoreError"]

_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise StoreError(f"unsupported store dtype {dtype}; use one of {sorted(_DTYPES)}")
    return name


class ActivationStore:
    """A directory of activation shards with a JSON index (see the module docstring).

    Open an existing store with ``ActivationStore(path)``; make one with :meth:`create` or
    :meth:`open_or_create`. Use as a context manager (or call :meth:`close`) when appending.

    Args:
        path: the store directory.

    Raises:
        StoreError: ``path`` is not a store (no or unreadable ``index.json``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise StoreError(
                f"{self.path} is not an activation store (no {INDEX}); create one with "
                "ActivationStore.create(...) or `deceptprobe cache`"
            )
        try:
            index = json.loads(index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{index_path} is not valid JSON ({e}); the store is corrupt") from e
        if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{index_path} has format_version {index.get('format_version')!r}; this "
                f"deceptprobe reads version {FORMAT_VERSION}"
            )
        self._index: dict[str, Any] = index
        self._buffer: list[tuple[dict[str, Tensor], list[dict[str, Any]]]] = []
        self._buffer_rows = 0
        self._pending_rows = 0
        self._writer: ShardWriter | None = None
        self._lock = threading.Lock()
        self._write_lock: Any = None
        self.shard_rows = int(index.get("shard_rows", 1024))
        self.max_shard_bytes = int(index.get("max_shard_bytes", 64 << 20))

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        model_id: str,
        hooks: Sequence[str],
        positions: str,
        dtype: torch.dtype,
        shard_rows: int = 1024,
        max_shard_bytes: int = 64 << 20,
        info: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> ActivationStore:
        """Create an empty store at ``path``.

        Args:
            path: a new or empty directory.
            model_id: identity of the model (see ``collect.model_identity``).
            hooks: the hook names every row has, in order.
            positions: the positions rule (``"last"``, ``"all"``, ``"index:3"``, ``"mask"``).
            dtype: dtype of every stored tensor.
            shard_rows: rows per shard (at most).
            max_shard_bytes: a shard is also cut when its tensors reach this size.
            info: free-form JSON facts to keep in the index (e.g. the prompts' hash).
            resume: if ``path`` is already a compatible store, open it instead of refusing.

        Raises:
            StoreError: ``path`` exists and is not empty (and is not a compatible store with
                ``resume=True``).
        """
        path = Path(path)
        if shard_rows < 1:
            raise StoreError(f"shard_rows must be >= 1; got {shard_rows}")
        wanted = {
            "model_id": model_id,
            "hooks": list(hooks),
            "positions": positions,
            "dtype": dtype_name(dtype),
        }
        if not wanted["hooks"]:
            raise StoreError("a store needs at least one hook name")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if resume and (path / INDEX).is_file():
                store = cls(path)
                store._check_compatible(wanted, info)
                store._begin_writing()
                return store
            hint = (
                "; pass resume=True (open_or_create) to append to it"
                if (path / INDEX).is_file()
                else ""
            )
            raise StoreError(f"{path} exists and is not empty{hint}")
        path.mkdir(parents=True, exist_ok=True)
        index = {
            "format_version": FORMAT_VERSION,
            **wanted,
            "d_model": None,
            "shapes": None,
            "n_rows": 0,
            "shard_rows": int(shard_rows),
            "max_shard_bytes": int(max_shard_bytes),
            "info": info or {},
            "shards": [],
        }
        write_atomic(path / INDEX, json.dumps(index, indent=1).encode())
        return cls(path)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], **kwargs: Any) -> ActivationStore:
        """Open a compatible existing store to append to it (resume), or create a new one.

        Takes the keyword arguments of :meth:`create`.
        """
        return cls.create(path, resume=True, **kwargs)

    def _check_compatible(self, wanted: dict[str, Any], info: dict[str, Any] | None) -> None:
        for key, value in wanted.items():
            if self._index[key] != value:
                raise StoreError(
                    f"{self.path} holds a store with {key}={self._index[key]!r}, not {value!r}; "
                    "use a new store directory for different activations"
                )
        for key, value in (info or {}).items():
            have = self._index.get("info", {}).get(key)
            if have is not None and have != value:
                raise StoreError(
                    f"{self.path} was written with {key}={have!r}, not {value!r}; "
                    "use a new store directory"
                )

    def _begin_writing(self) -> None:
        """Take the store's writer lock, then discard files the index does not name.

        The lock (``flock`` on ``.lock``) is released by the OS when the process dies, so a
        killed writer never blocks its own resume; a second live writer is refused. Readers
        take no lock and never delete anything.
        """
        if self._write_lock is not None:
            return
        handle = (self.path / ".lock").open("a")
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            handle.close()
            raise StoreError(f"{self.path} is being written by another process") from e
        except ImportError:  # pragma: no cover - non-POSIX: no cross-process lock
            pass
        self._write_lock = handle
        self._discard_orphans()

    def _end_writing(self) -> None:
        if self._write_lock is not None:
            self._write_lock.close()
            self._write_lock = None

    def _discard_orphans(self) -> None:
        known = {s["name"] for s in self._index["shards"]}
        known |= {s["name"].replace(".safetensors", ".jsonl") for s in self._index["shards"]}
        for p in self.path.iterdir():
            orphan = (_SHARD_RE.match(p.name) and p.name not in known) or p.name.endswith(".tmp")
            if orphan:
                logger.info("discarding %s: not committed to the store index", p)
                try:
                    p.unlink()
                except OSError:
                    pass

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self._index["n_rows"]) + self._pending_rows + self._buffer_rows

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}, rows={len(self)}, hooks={len(self.hooks)})"

    @property
    def hooks(self) -> list[str]:
        return list(self._index["hooks"])

    @property
    def model_id(self) -> str:
        return str(self._index["model_id"])

    @property
    def positions(self) -> str:
        return str(self._index["positions"])

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self._index["dtype"]]

    @property
    def d_model(self) -> int | None:
        return self._index["d_model"]

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._index.get("info", {}))

    @property
    def n_shards(self) -> int:
        return len(self._index["shards"])

    # -------------------------------------------------------------------- writing
    def append(self, acts: dict[str, Tensor], metadata: Sequence[dict[str, Any]]) -> None:
        """Add rows (dim 0 of every tensor) with one metadata dict per row.

        Raises:
            StoreError: different hooks, dtype, trailing shape or row counts than the store, or
                metadata that is not JSON.
        """
        self._check_writer()
        if set(acts) != set(self.hooks):
            raise StoreError(f"appended hooks {sorted(acts)} differ from the store's {self.hooks}")
        rows = {k: int(v.shape[0]) for k, v in acts.items()}
        n = len(metadata)
        if any(r != n for r in rows.values()):
            raise StoreError(f"row counts differ: tensors {rows}, metadata {n}")
        shapes = self._index["shapes"]
        for k, v in acts.items():
            if v.dtype != self.dtype:
                raise StoreError(
                    f"hook {k} has dtype {v.dtype}; this store holds {self.dtype} "
                    f"(convert with .to({self.dtype}) or use another store)"
                )
            if shapes is not None and list(v.shape[1:]) != shapes[k]:
                raise StoreError(
                    f"hook {k} rows have shape {list(v.shape[1:])}; store has {shapes[k]}"
                )
        if any(not isinstance(m, dict) for m in metadata):
            raise StoreError("row metadata must be a list of dicts (one per row)")
        try:
            json.dumps(list(metadata))
        except (TypeError, ValueError) as e:
            raise StoreError(f"row metadata must be JSON-serialisable: {e}") from e
        if n == 0:
            return
        if shapes is None:
            self._index["shapes"] = {k: list(acts[k].shape[1:]) for k in self.hooks}
            first = acts[self.hooks[0]]
            self._index["d_model"] = int(first.shape[-1]) if first.dim() > 1 else None
        cpu = {k: acts[k].detach().to("cpu") for k in self.hooks}
        self._buffer.append((cpu, list(metadata)))
        self._buffer_rows += n
        row_bytes = sum(v[0].numel() * v.element_size() for v in cpu.values())
        limit = max(1, min(self.shard_rows, self.max_shard_bytes // max(row_bytes, 1)))
        while self._buffer_rows >= limit:
            self._submit(limit)

    def _submit(self, rows: int) -> None:
        """Cut the first ``rows`` buffered rows into a shard and hand it to the writer."""
        taken_t: dict[str, list[Tensor]] = {k: [] for k in self.hooks}
        taken_m: list[dict[str, Any]] = []
        need = rows
        while need > 0:
            acts, meta = self._buffer[0]
            k = min(need, len(meta))
            for h in self.hooks:
                taken_t[h].append(acts[h][:k])
            taken_m.extend(meta[:k])
            if k == len(meta):
                self._buffer.pop(0)
            else:
                self._buffer[0] = ({h: acts[h][k:] for h in self.hooks}, meta[k:])
            need -= k
        tensors = {h: torch.cat(v).contiguous() for h, v in taken_t.items()}
        self._buffer_rows -= rows
        with self._lock:
            self._pending_rows += rows
        if self._writer is None:
            self._begin_writing()
            self._writer = ShardWriter(self._commit_shard)
            self._writer.start()
        self._writer.queue.put((tensors, taken_m))
        self._check_writer()

    def _commit_shard(self, tensors: dict[str, Tensor], metadata: list[dict[str, Any]]) -> None:
        """Write one shard, then the index that names it (runs in the writer thread)."""
        number = max((int(s["name"][6:12]) for s in self._index["shards"]), default=-1) + 1
        entry = write_shard(self.path, number, tensors, metadata)
        index = dict(self._index)
        index["shards"] = [*self._index["shards"], entry]
        index["n_rows"] = int(self._index["n_rows"]) + entry["rows"]
        write_atomic(self.path / INDEX, json.dumps(index, indent=1).encode())
        with self._lock:
            self._index = index
            self._pending_rows -= entry["rows"]

    def _check_writer(self) -> None:
        if self._writer is not None:
            self._writer.check()

    def flush(self) -> None:
        """Write buffered rows as a (possibly short) shard and wait until all are committed."""
        if self._buffer_rows:
            self._submit(self._buffer_rows)
        if self._writer is not None:
            self._writer.queue.join()
            self._check_writer()

    def close(self) -> None:
        """Flush, then stop the writer thread. The store stays readable."""
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.queue.put(None)
                self._writer.join()
                self._writer = None
            self._end_writing()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------------- reading
    def _hooks_arg(self, hooks: Sequence[str] | str | None) -> list[str]:
        if hooks is None:
            return self.hooks
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        unknown = [h for h in hooks if h not in self.hooks]
        if unknown:
            raise StoreError(f"hooks {unknown} are not in this store; it holds {self.hooks}")
        return hooks

    def _sync(self) -> None:
        if self._buffer_rows or self._pending_rows:
            self.flush()

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """One metadata dict per row, in row order."""
        self._sync()
        out: list[dict[str, Any]] = []
        for shard in self._index["shards"]:
            out.extend(read_meta(self.path, shard))
        return out

    def labels(self, key: str) -> Tensor:
        """The metadata field ``key`` of every row as a tensor (long for ints/bools, else float).

        Raises:
            StoreError: a row lacks ``key`` or holds a non-numeric value.
        """
        values = []
        for i, m in enumerate(self.metadata):
            if key not in m:
                raise StoreError(f"row {i} has no label {key!r}; its fields are {sorted(m)}")
            v = m[key]
            if not isinstance(v, (bool, int, float)):
                raise StoreError(f"label {key!r} of row {i} is {v!r}, not a number or bool")
            values.append(v)
        if all(isinstance(v, (bool, int)) for v in values):
            return torch.tensor([int(v) for v in values], dtype=torch.long)
        return torch.tensor(values, dtype=torch.float32)

    def load(
        self, hooks: Sequence[str] | str | None = None
    ) -> dict[str, Float[Tensor, "batch ..."]]:
        """Every row of ``hooks`` (default: all) in memory, ``{hook: [rows, ...]}``."""
        names = self._hooks_arg(hooks)
        self._sync()
        parts: dict[str, list[Tensor]] = {h: [] for h in names}
        for shard in self._index["shards"]:
            t = read_shard(self.path, shard)
            for h in names:
                parts[h].append(t[h])
        shapes = self._index["shapes"] or {}
        return {
            h: torch.cat(v) if v else torch.empty((0, *shapes.get(h, [])), dtype=self.dtype)
            for h, v in parts.items()
        }

    def iter_batches(
        self, batch_rows: int, hooks: Sequence[str] | str | None = None
    ) -> Iterator[tuple[dict[str, Tensor], list[dict[str, Any]]]]:
        """Stream ``(activations, metadata)`` batches of ``batch_rows`` rows (the last may be
        shorter), reading one shard at a time."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1; got {batch_rows}")
        names = self._hooks_arg(hooks)
        self._sync()
        carry_t: dict[str, Tensor] | None = None
        carry_m: list[dict[str, Any]] = []
        for shard in self._index["shards"]:
            t = read_shard(self.path, shard)
            meta = read_meta(self.path, shard)
            cur = {h: t[h] for h in names}
            del t
            if carry_t is not None:
                cur = {h: torch.cat([carry_t[h], cur[h]]) for h in names}
                meta = carry_m + meta
            start = 0
            while len(meta) - start >= batch_rows:
                yield (
                    {h: v[start : start + batch_rows] for h, v in cur.items()},
                    meta[start : start + batch_rows],
                )
                start += batch_rows
            carry_t = {h: v[start:].clone() for h, v in cur.items()}
            carry_m = meta[start:]
        if carry_t is not None and carry_m:
            yield carry_t, carry_m
