"""Hook selection: turn what a user typed into the exact hook names of one model.

TransformerLens names every activation it can expose (``blocks.3.hook_resid_post``,
``blocks.0.attn.hook_pattern``, ...). Researchers rarely want to spell out 24 of them, so a
selection may be

- an exact name (``"blocks.2.hook_resid_post"``),
- a short name that matches that hook in every block (``"resid_post"`` or
  ``"hook_resid_post"`` → ``blocks.{i}.hook_resid_post`` for every ``i``; ``"attn.hook_pattern"``),
- a glob (``"blocks.*.hook_resid_post"``, ``"blocks.1?.hook_mlp_out"``),
- a list of any of these, optionally narrowed to some layers (``layers=[0, 2, -1]``).

An unknown selection is an error that lists the valid names (one line per name family, with the
layer range collapsed) and the closest matches (``difflib``), never an empty result.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")
_GLOB_CHARS = set("*?[")

HookSelection = str | Sequence[str]


def layer_of(name: str) -> int | None:
    """The block index in a hook name (``blocks.3.hook_x`` → 3), or ``None`` outside blocks."""
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else None


def collapse(names: Sequence[str]) -> list[str]:
    """Name families with the block index replaced by ``{i}``, first-seen order, unique."""
    out: dict[str, None] = {}
    for n in names:
        out[_BLOCK_RE.sub("blocks.{i}.", n)] = None
    return list(out)


def _match_one(pattern: str, valid: Sequence[str]) -> list[str]:
    if pattern in valid:
        return [pattern]
    if _GLOB_CHARS & set(pattern):
        return [n for n in valid if fnmatch.fnmatchcase(n, pattern)]
    suffix = pattern if pattern.startswith("hook_") or "." in pattern else f"hook_{pattern}"
    if "." in suffix and not suffix.split(".")[-1].startswith("hook_"):
        return []
    return [n for n in valid if n == suffix or n.endswith("." + suffix)]


def unknown_hook_error(pattern: str, valid: Sequence[str], n_layers: int | None) -> ValueError:
    """A ``ValueError`` naming the closest matches and every valid hook family."""
    families = collapse(valid)
    close = difflib.get_close_matches(pattern, list(families) + list(valid), n=5, cutoff=0.5)
    layer_note = f" (i = 0..{n_layers - 1})" if n_layers else ""
    closest = ", ".join(close) if close else "none"
    return ValueError(
        f"unknown hook {pattern!r}: no hook point of this model matches it. Closest matches: "
        f"{closest}. Valid hook names{layer_note}: {', '.join(families)}. A selection may be an "
        "exact name, a short name such as 'resid_post', or a glob such as "
        "'blocks.*.hook_resid_post'."
    )


def resolve(
    hooks: HookSelection,
    valid: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    n_layers: int | None = None,
    order: dict[str, int] | None = None,
) -> list[str]:
    """Resolve a hook selection against a model's valid hook names.

    Args:
        hooks: a name, short name, glob, or a list of them.
        valid: every hook name the model exposes.
        layers: keep only hooks inside these blocks (negative indices count from the end);
            ``None`` keeps all.
        n_layers: number of blocks (for negative ``layers`` and the error message).
        order: position of each name in the model's forward pass; the result follows it
            (block order otherwise).

    Returns:
        The selected names, unique, in layer (forward) order.

    Raises:
        ValueError: a selection matches nothing, or ``layers`` is out of range / empty.
    """
    patterns = [hooks] if isinstance(hooks, str) else list(hooks)
    if not patterns:
        raise ValueError("hooks is empty: name at least one hook, e.g. hooks='resid_post'")
    wanted_layers: set[int] | None = None
    if layers is not None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: pass None for all layers or a non-empty list")
        if n_layers is None:
            wanted_layers = set(layers)
        else:
            bad = [i for i in layers if not -n_layers <= i < n_layers]
            if bad:
                raise ValueError(
                    f"layers {bad} out of range for a model with {n_layers} layers "
                    f"(valid: {-n_layers}..{n_layers - 1})"
                )
            wanted_layers = {i % n_layers for i in layers}
    selected: dict[str, None] = {}
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"hook selections are strings; got {type(pattern).__name__}")
        matched = _match_one(pattern, valid)
        if not matched:
            raise unknown_hook_error(pattern, valid, n_layers)
        if wanted_layers is not None:
            matched = [n for n in matched if layer_of(n) in wanted_layers]
            if not matched:
                raise ValueError(
                    f"hook selection {pattern!r} matches no hook in layers {sorted(wanted_layers)}"
                )
        for n in matched:
            selected[n] = None
    index = {n: i for i, n in enumerate(valid)}

    def key(n: str) -> tuple[float, int]:
        if order is not None:
            return (order.get(n, 10**9), index.get(n, 0))
        layer = layer_of(n)
        if layer is None:
            early = n.startswith(
                ("embed", "pos_embed", "hook_embed", "hook_pos_embed", "hook_tokens")
            )
            layer = -1 if early else 10**9
        return (layer, index.get(n, 0))

    return sorted(selected, key=key)
