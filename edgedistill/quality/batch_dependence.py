"""Batch dependence: how much a sentence's output moves when other sentences share its batch.

An fp32 graph gives a sentence the same output alone or padded into a batch (up to float rounding,
~1e-6). ``int8-dynamic`` computes each activation's quantisation scale per call over the whole
batch tensor, padding included, so a sentence's output shifts with its neighbours (~1e-2 measured);
static scales (``int8-static``, QAD) should bring it back to ~0. The bench reports the figure per
exported scheme so an app that batches requests knows what it gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

BATCH = 16
PROTOCOL = (f"max abs difference of each sentence's output run alone vs inside one padded batch of {BATCH} "
            "real test sentences of mixed lengths (spread from shortest to longest)")


def mixed_lengths(tokenizer, texts: Sequence[str], max_length: int, n: int = BATCH) -> list[str]:
    """``n`` texts whose token lengths spread evenly from the shortest to the longest, so the batch pads."""
    from ..models.encode import length_order

    texts = [t for t in texts if t.strip()]
    if len(texts) <= n:
        return list(texts)
    order = length_order(tokenizer, texts, max_length)
    picks = np.unique(np.linspace(0, len(texts) - 1, n).round().astype(int))
    return [texts[i] for i in order[picks]]


def max_abs_diff(run: Callable[[dict], np.ndarray], tokenizer, texts: Sequence[str], max_length: int) -> float | None:
    """``run(features) -> [B, D]`` (tokenizer output as numpy); None for fewer than two texts."""
    if len(texts) < 2:
        return None
    alone = np.concatenate([np.asarray(run(tokenizer([t], truncation=True, max_length=max_length,
                                                      return_tensors="np")), dtype=np.float64)
                            for t in texts])
    batch = np.asarray(run(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                                     return_tensors="np")), dtype=np.float64)
    return float(np.max(np.abs(alone - batch)))
