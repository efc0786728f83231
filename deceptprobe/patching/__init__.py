"""Activation patching, attribution patching, trigger localisation and reconstruction."""

from deceptprobe.patching.attribution import attribution_patch
from deceptprobe.patching.patch import patch_sweep
from deceptprobe.patching.triggers import find_trigger

__all__ = ["attribution_patch", "find_trigger", "patch_sweep"]
