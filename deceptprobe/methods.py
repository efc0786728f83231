"""The registries of method names: one place each, imported by the library and the CLI.

A leaf module (no imports), so the CLI can validate a ``--method`` without loading torch.
The implementations live where the names point: a safety method ``m`` in
``deceptprobe.safety.<m>`` (its ``run``), a detector method in
:class:`deceptprobe.detect.Detector`.
"""

SAFETY_METHODS: tuple[str, ...] = ("sft", "rl", "adversarial", "distill")
"""Safety-training methods, each a module ``deceptprobe.safety.<name>``."""

FINE_TUNING_METHODS: tuple[str, ...] = ("sft", "rl", "adversarial")
"""The safety methods that fine-tune the organism itself (``distill`` trains a new student)."""

DETECTOR_METHODS: tuple[str, ...] = ("contrast", "anomaly", "supervised")
"""How a :class:`~deceptprobe.detect.Detector` is fitted."""
