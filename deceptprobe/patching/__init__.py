"""Activation patching, attribution patching, trigger localisation and reconstruction."""

from deceptprobe.patching.attribution import attribution_patch
from deceptprobe.patching.patch import patch_sweep

# find_trigger (trigger reconstruction, deceptprobe/patching/triggers.py) joins these names
# when that module lands.
__all__ = ["attribution_patch", "patch_sweep"]
