"""``deceptprobe safety``."""

from __future__ import annotations

from deceptprobe.cli._common import fail


def safety() -> None:
    """Not available yet in this build."""
    fail("'deceptprobe safety' is not available in this build yet")
