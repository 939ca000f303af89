"""Sentence embeddings from a PyTorch encoder or an ONNX session, in batches.

Texts are sorted by length so each batch pads to its own longest sentence;
results come back in the original order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..progress import progress


def pool(hidden, mask, pooling: str = "mean", normalize: bool = True):
    """Pooled sentence embedding from token states ``[B, T, H]`` and mask ``[B, T]`` (torch)."""
    import torch

    if pooling == "cls":
        emb = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb


def length_order(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    return np.argsort(lengths, kind="stable")


def batched_embed(
    run: Callable[[dict], np.ndarray],
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    desc: str = "embedding",
    return_tensors: str = "np",
) -> np.ndarray:
    """Apply ``run(features) -> [B, H]`` to all texts; ``features`` is the tokenizer's output."""
    order = length_order(tokenizer, texts, max_length)
    out: np.ndarray | None = None
    for start in progress(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        feats = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors=return_tensors)
        emb = np.asarray(run(feats), dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[idx] = emb
    assert out is not None
    return out


def torch_embedder(model, pooling: str = "mean", normalize: bool = True):
    import torch

    def run(feats) -> np.ndarray:
        with torch.inference_mode():
            hidden = model(**feats).last_hidden_state
            return pool(hidden, feats["attention_mask"], pooling, normalize).float().numpy()

    return run


def embed_torch(model, tokenizer, texts, max_length, pooling="mean", normalize=True, batch_size=64, desc="embedding"):
    return batched_embed(torch_embedder(model, pooling, normalize), tokenizer, texts, max_length, batch_size, desc,
                         return_tensors="pt")
