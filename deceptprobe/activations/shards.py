"""Shard files of an activation store: atomic writes, sha256 checks, a background writer.

A shard is a safetensors file (one tensor per hook, rows along dim 0) plus a JSON-lines file
of row metadata. Both are written to a hidden temporary name, fsync'ed and moved into place
with ``os.replace``, so a reader (or a resumed writer) never sees half a file under a real
name. Their sha256 digests go into the store index; reads verify them.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load as st_load
from safetensors.torch import save_file
from torch import Tensor


class StoreError(ValueError):
    """A store directory is missing, corrupt, or incompatible with the requested use."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def meta_name(shard_name: str) -> str:
    return shard_name.replace(".safetensors", ".jsonl")


def write_shard(
    directory: Path, number: int, tensors: dict[str, Tensor], metadata: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write shard ``number`` atomically; returns its index entry (name, rows, digests)."""
    name = f"shard-{number:06d}.safetensors"
    tmp = directory / f".{name}.tmp"
    save_file(tensors, str(tmp))
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    sha = sha256_file(tmp)
    os.replace(tmp, directory / name)
    meta_bytes = "".join(json.dumps(m, sort_keys=True) + "\n" for m in metadata).encode()
    write_atomic(directory / meta_name(name), meta_bytes)
    return {
        "name": name,
        "rows": len(metadata),
        "sha256": sha,
        "meta_sha256": hashlib.sha256(meta_bytes).hexdigest(),
    }


def read_shard(directory: Path, entry: dict[str, Any]) -> dict[str, Tensor]:
    """The tensors of a shard, after checking its sha256.

    Raises:
        StoreError: the shard is missing, corrupt or truncated (the message names it).
    """
    p = directory / entry["name"]
    if not p.is_file():
        raise StoreError(f"shard {entry['name']} of {directory} is missing")
    data = p.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != entry["sha256"]:
        raise StoreError(
            f"shard {entry['name']} of {directory} is corrupt or truncated (sha256 {sha[:12]}, "
            f"index says {entry['sha256'][:12]}); delete the store and re-run the caching"
        )
    return st_load(data)


def read_meta(directory: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The row metadata of a shard, after checking its sha256."""
    name = meta_name(entry["name"])
    p = directory / name
    if not p.is_file():
        raise StoreError(f"metadata file {name} of {directory} is missing")
    data = p.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["meta_sha256"]:
        raise StoreError(f"metadata file {name} of {directory} is corrupt or truncated")
    return [json.loads(line) for line in data.decode().splitlines() if line]


Job = tuple[dict[str, Tensor], list[dict[str, Any]]]


class ShardWriter(threading.Thread):
    """Runs ``commit(tensors, metadata)`` for queued shards, in order, off the caller's thread.

    The queue is bounded (``depth``), so a producer faster than the disk blocks instead of
    piling shards up in memory. An error stops further commits and is re-raised by
    :meth:`check` in the producer's thread.
    """

    def __init__(
        self, commit: Callable[[dict[str, Tensor], list[dict[str, Any]]], None], depth: int = 1
    ) -> None:
        super().__init__(name="activation-store-writer", daemon=True)
        self.commit = commit
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                if self.error is None:
                    self.commit(*item)
            except BaseException as e:  # surfaced by check()
                self.error = e
            finally:
                self.queue.task_done()

    def check(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise StoreError(f"writing a shard failed: {err}") from err
