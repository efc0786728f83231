"""Train/test splits by prompt template, so held-out prompts are new sentences, not new rows.

Prompts generated from one template share almost all tokens; a probe tested on rows whose
templates it was trained on can score well by memorising the template, not the concept. Grouped
splits (scikit-learn's ``GroupShuffleSplit`` / ``GroupKFold``) keep every template wholly on one
side. These versions are deterministic by seed and retry until both classes appear on both
sides (and say so clearly when that is impossible).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["group_kfold", "stratified_split", "template_split"]

_MAX_TRIES = 200


def _both(y: NDArray[np.int64], idx: NDArray[np.int64]) -> bool:
    return len(np.unique(y[idx])) == 2


def _encode(labels: ArrayLike) -> NDArray[np.int64]:
    y = np.asarray(labels)
    classes, y01 = np.unique(y, return_inverse=True)
    if len(classes) != 2:
        raise ValueError(
            f"splitting needs exactly two classes in labels, got {len(classes)} "
            f"({classes[:5].tolist()})"
        )
    return y01.astype(np.int64)


def stratified_split(
    labels: ArrayLike, *, test_size: float = 0.3, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row-level split that keeps the class ratio on both sides.

    Args:
        labels: Two-class labels.
        test_size: Fraction of rows in the test set.
        seed: Seed of the shuffle.

    Returns:
        Sorted ``(train_idx, test_idx)``.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    y = _encode(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise ValueError(
                f"class {c} has {len(idx)} example(s); need at least 2 per class to put one "
                "on each side of a train/test split"
            )
        k = min(max(1, round(test_size * len(idx))), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def template_split(
    labels: ArrayLike, groups: ArrayLike, *, test_size: float = 0.3, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Group shuffle split: whole templates (groups) go to train or to test.

    Groups are shuffled and taken into the test set until it holds at least ``test_size`` of
    the rows; the first shuffle (from ``seed``) that leaves both classes on both sides wins.

    Args:
        labels: Two-class labels, one per row.
        groups: Template id per row (any hashable values, e.g. template strings).
        test_size: Target fraction of rows in the test set.
        seed: Seed of the shuffle.

    Returns:
        Sorted ``(train_idx, test_idx)`` with disjoint groups.

    Raises:
        ValueError: Fewer than two groups, or no split within 200 shuffles puts both classes
            on both sides (e.g. every template holds only one class and one class has a single
            template).
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    y = _encode(labels)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have one entry per row ({len(y)}), got shape {g.shape}")
    uniq, gid = np.unique(g, return_inverse=True)
    if len(uniq) < 2:
        raise ValueError(
            f"need at least two distinct groups (templates) to split by group, got {len(uniq)}; "
            "pass groups=None for a row-level split"
        )
    sizes = np.bincount(gid)
    rng = np.random.default_rng(seed)
    target = test_size * len(y)
    for _ in range(_MAX_TRIES):
        order = rng.permutation(len(uniq))
        cum = np.cumsum(sizes[order])
        k = int(np.searchsorted(cum, target)) + 1
        k = min(max(k, 1), len(uniq) - 1)
        is_test = np.isin(gid, order[:k])
        test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
        if _both(y, train) and _both(y, test):
            return train, test
    raise ValueError(
        f"could not split {len(uniq)} groups so that both classes appear in train and test "
        f"(tried {_MAX_TRIES} shuffles); each class needs rows in at least two groups, or use "
        "templates that each contain both classes"
    )


def group_kfold(
    labels: ArrayLike, groups: ArrayLike, *, n_splits: int = 5, seed: int = 0
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """K-fold over groups (templates), shuffled by seed, balanced by row count.

    Groups are shuffled, then assigned largest-first to the currently smallest fold.

    Args:
        labels: Two-class labels, one per row.
        groups: Template id per row.
        n_splits: Number of folds (at most the number of groups).
        seed: Seed of the shuffle.

    Returns:
        ``n_splits`` sorted ``(train_idx, test_idx)`` pairs; every row is tested exactly once.

    Raises:
        ValueError: Too few groups, or a fold lacks a class on either side.
    """
    y = _encode(labels)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have one entry per row ({len(y)}), got shape {g.shape}")
    uniq, gid = np.unique(g, return_inverse=True)
    if not 2 <= n_splits <= len(uniq):
        raise ValueError(
            f"n_splits must be between 2 and the number of groups ({len(uniq)}), got {n_splits}"
        )
    sizes = np.bincount(gid)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of = np.empty(len(uniq), dtype=np.int64)
    load = np.zeros(n_splits)
    for grp in order:
        f = int(np.argmin(load))
        fold_of[grp] = f
        load[f] += sizes[grp]
    folds = []
    for f in range(n_splits):
        is_test = fold_of[gid] == f
        test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
        if not (_both(y, train) and _both(y, test)):
            raise ValueError(
                f"fold {f} lacks a class on its train or test side; use fewer folds or "
                "templates that each contain both classes"
            )
        folds.append((train, test))
    return folds
