"""``deceptprobe cache``."""

from __future__ import annotations

from deceptprobe.cli._common import fail


def cache() -> None:
    """Not available yet in this build."""
    fail("'deceptprobe cache' is not available in this build yet")
