"""Moved: :class:`edgedistill.backends.ort.OnnxLM` (kept so existing imports keep working)."""

from ..backends.ort import OnnxLM

__all__ = ["OnnxLM"]
