"""Curriculum distillation: batches come from a pool of the examples the teacher finds easiest,
growing to every example over the first ``curriculum_fraction`` of training.

Difficulty comes from the cached teacher logits, so ordering costs nothing beyond the logits
cache the logit losses already use: ``teacher_confidence`` ranks by the teacher's top-class
probability (most confident first), ``teacher_loss`` by the teacher's cross-entropy on the
gold label (lowest first; confidently wrong examples come last).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

MODES = ("none", "teacher_confidence", "teacher_loss")


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def difficulty(logits: np.ndarray, labels: np.ndarray, mode: str) -> np.ndarray:
    """Per-example difficulty (higher = harder)."""
    logp = _log_softmax(logits)
    if mode == "teacher_confidence":
        return 1.0 - np.exp(logp.max(1))
    if mode == "teacher_loss":
        return -logp[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    raise ValueError(f"curriculum mode {mode!r} (valid: {', '.join(MODES[1:])})")


def easy_first(logits: np.ndarray, labels: np.ndarray, mode: str) -> np.ndarray:
    """Example indices, easiest first (ties keep data order)."""
    return np.argsort(difficulty(logits, labels, mode), kind="stable")


def pool_size(frac: float, n: int, start: float, fraction: float, batch_size: int = 1) -> int:
    """How many of the easiest examples are eligible ``frac`` (0..1) of the way through training."""
    share = start + (1.0 - start) * min(1.0, frac / fraction)
    return min(n, max(batch_size, math.ceil(share * n - 1e-9)))


def curriculum_batches(order: np.ndarray, batch_size: int, max_steps: int, start: float, fraction: float,
                       rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Step-by-step batches drawn (without replacement within a batch) from the growing easy pool."""
    n = len(order)
    step = 0
    while True:
        step += 1
        frac = min(1.0, (step - 1) / max(1, max_steps - 1))
        k = pool_size(frac, n, start, fraction, batch_size)
        yield np.sort(rng.choice(order[:k], size=min(batch_size, k), replace=False))
