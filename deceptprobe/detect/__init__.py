"""Defection detectors: contrast pairs, anomaly detection or supervised probes, saved as safetensors + JSON."""

from deceptprobe.detect.detector import Detector

__all__ = ["Detector"]
