"""Template (group) splits: disjoint groups, both classes each side, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deceptprobe.probing.splits import group_kfold, stratified_split, template_split


def templated(n_templates=10, per=6, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"template {i}" for i in range(n_templates)], per)
    y = rng.integers(0, 2, len(groups))
    y[::per] = 0
    y[1::per] = 1
    return y, groups


def test_template_split_disjoint_and_balanced():
    y, groups = templated()
    train, test = template_split(y, groups, test_size=0.3, seed=0)
    assert set(groups[train]).isdisjoint(groups[test])
    assert len(train) + len(test) == len(y)
    assert set(y[train]) == set(y[test]) == {0, 1}
    assert 0.2 <= len(test) / len(y) <= 0.45
    again = template_split(y, groups, test_size=0.3, seed=0)
    np.testing.assert_array_equal(train, again[0])
    other = template_split(y, groups, test_size=0.3, seed=1)
    assert not np.array_equal(test, other[1])


def test_template_split_impossible():
    y = np.r_[np.zeros(5), np.ones(5)].astype(int)
    groups = np.r_[np.zeros(5), np.ones(5)]  # each class lives in one template only
    with pytest.raises(ValueError, match="both classes"):
        template_split(y, groups)
    with pytest.raises(ValueError, match="at least two distinct groups"):
        template_split(y, np.zeros(10))
    with pytest.raises(ValueError, match="one entry per row"):
        template_split(y, np.zeros(3))


def test_group_kfold_covers_every_row_once():
    y, groups = templated(n_templates=12)
    folds = group_kfold(y, groups, n_splits=4, seed=0)
    tested = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(y)))
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test])
    with pytest.raises(ValueError, match="n_splits"):
        group_kfold(y, groups, n_splits=50)


def test_stratified_split():
    y = np.r_[np.zeros(30), np.ones(10)].astype(int)
    train, test = stratified_split(y, test_size=0.3, seed=0)
    assert np.intersect1d(train, test).size == 0
    assert (y[test] == 1).sum() == 3 and (y[test] == 0).sum() == 9
    with pytest.raises(ValueError, match="at least 2 per class"):
        stratified_split(np.r_[np.zeros(5), 1].astype(int))


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=4, max_size=60),
    n_groups=st.integers(2, 8),
    seed=st.integers(0, 100),
)
def test_template_split_property(labels, n_groups, seed):
    y = np.array(labels)
    groups = np.random.default_rng(seed).integers(0, n_groups, len(y))
    if len(np.unique(y)) < 2:
        return
    try:
        train, test = template_split(y, groups, seed=seed)
    except ValueError as e:
        assert "group" in str(e)
        return
    assert set(groups[train]).isdisjoint(groups[test])
    assert set(y[train]) == set(y[test]) == {0, 1}
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(len(y)))
