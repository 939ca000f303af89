"""Ensembles as teachers: the peers' pooled prediction (online), or several fixed teachers (offline).

- ``online_ensemble``: ``peers`` students train together; the mean of all peers' logits, detached,
  teaches each peer (online ensemble distillation, as in ONE / OKDDip without the gate), next to
  the hard labels. Unlike ``mutual`` each peer sees one consensus target, itself included.
- Multi-teacher KD (``[distill] teachers``): the cached logits of the [teacher] and of each extra
  classifier combine into one target per example, by plain mean or weighted per example by each
  teacher's confidence (max probability, or softmax over the teachers of the negative entropy).
  Token states (FitNets / hidden_mse) are averaged when the teachers share a width and tokenizer.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import RecipeError
from .strategies import register_strategy
from .strategy_self import MutualStrategy


@register_strategy("online_ensemble")
class OnlineEnsembleStrategy(MutualStrategy):
    """N peers; the detached mean of all their logits is every peer's soft target."""

    name = "online_ensemble"

    def targets(self, outs, i):
        return [torch.stack([o.detach().float() for o in outs]).mean(0)]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def teacher_weights(logits: list[np.ndarray], mode: str, confidence: str = "max_prob") -> np.ndarray:
    """Per-example weights ``[K, N]`` (columns sum to 1) of K teachers' logits ``[N, C]``."""
    k, n = len(logits), len(logits[0])
    if mode == "mean":
        return np.full((k, n), 1.0 / k)
    probs = [_softmax(z.astype(np.float64)) for z in logits]
    if confidence == "max_prob":
        conf = np.stack([p.max(-1) for p in probs])
        return conf / conf.sum(0, keepdims=True)
    neg_entropy = np.stack([(p * np.log(np.clip(p, 1e-12, None))).sum(-1) for p in probs])
    return _softmax(neg_entropy.T).T


def combine_logits(logits: list[np.ndarray], mode: str, confidence: str = "max_prob") -> np.ndarray:
    """One ``[N, C]`` float32 target from K teachers' logits: their (per-example weighted) mean."""
    shapes = {z.shape for z in logits}
    if len(shapes) != 1:
        raise RecipeError(f"[distill] key 'teachers': the teachers' logits have shapes {sorted(shapes)}; "
                          "every teacher must have the same classes")
    w = teacher_weights(logits, mode, confidence)
    return np.einsum("kn,knc->nc", w, np.stack([np.asarray(z, dtype=np.float64) for z in logits])).astype(np.float32)


def check_widths(names: list[str], widths: list[int]) -> None:
    """Token states can only be averaged across teachers of one width."""
    if len(set(widths)) > 1:
        shown = ", ".join(f"{n} {w}" for n, w in zip(names, widths, strict=True))
        raise RecipeError(f"[distill] key 'teachers': feature losses average the teachers' token states, but their "
                          f"widths differ ({shown}); use teachers of one width or only logit losses (kd, ...)")


def mean_hidden(targets: list) -> dict[int, np.ndarray]:
    """Token states averaged over teachers (float32); all must share the tokenizer (same token offsets)."""
    first = targets[0]
    for t in targets[1:]:
        if not np.array_equal(t.offsets, first.offsets):
            raise RecipeError("[distill] key 'teachers': feature losses average token states, but the teachers "
                              "tokenize the training text differently; use teachers with one tokenizer or only "
                              "logit losses")
    return {layer: np.mean([np.asarray(t.hidden[layer], dtype=np.float32) for t in targets], axis=0)
            for layer in first.hidden}
