"""``deceptprobe patch``."""

from __future__ import annotations

from deceptprobe.cli._common import fail


def patch() -> None:
    """Not available yet in this build."""
    fail("'deceptprobe patch' is not available in this build yet")
