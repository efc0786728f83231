"""``deceptprobe study``."""

from __future__ import annotations

from deceptprobe.cli._common import fail


def study() -> None:
    """Not available yet in this build."""
    fail("'deceptprobe study' is not available in this build yet")
