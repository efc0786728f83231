"""Activation caching: :func:`collect` for TransformerLens and Hugging Face models, and an
on-disk :class:`ActivationStore` (safetensors shards, JSON index, streaming, resumable writes).

Streaming many prompts into a store: ``deceptprobe.activations.stream.cache_to_store``.
"""

from deceptprobe.activations.collect import collect
from deceptprobe.activations.store import ActivationStore

__all__ = ["collect", "ActivationStore"]
