"""Moved: running ``.pte`` programs is :mod:`edgedistill.backends.et` (kept so existing imports keep working)."""

from ..backends.et import INPUT_ORDER, load_method, pte_outputs, pte_runner, set_threads

__all__ = ["INPUT_ORDER", "load_method", "pte_embedder", "pte_outputs", "pte_runner", "set_threads"]


def pte_embedder(path, threads: int = 1):
    """``feats -> [B, H]`` sentence embeddings, for :func:`edgedistill.models.encode.batched_embed`."""
    from ..backends import et

    return et.open(path, threads).output("sentence_embedding")
