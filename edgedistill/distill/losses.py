"""Knowledge-distillation losses, registered by name.

A loss is a function ``(student: Outputs, teacher: Outputs, **params) -> scalar``.
Recipes combine them by name with weights (``[distill] losses = {cosine = 1.0,
hidden_mse = 1.0}``); adding a loss is one decorated function and one test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..registry import Registry


@dataclass
class Outputs:
    """What one side (student or teacher) produced for a batch."""

    embedding: torch.Tensor | None = None
    """Pooled sentence embedding ``[B, H]`` (normalised if the teacher's embeddings are)."""
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    """Token states ``[B, T, H]`` keyed by *student* layer, already paired through the layer map."""
    mask: torch.Tensor | None = None
    """Attention mask ``[B, T]`` (1 = real token)."""


@dataclass(frozen=True)
class LossEntry:
    fn: Callable[..., torch.Tensor]
    needs: frozenset[str]
    """Which fields of :class:`Outputs` the loss reads ("embedding", "hidden")."""
    doc: str


LOSSES: Registry[LossEntry] = Registry("loss", "[distill] key 'losses'")


def register_loss(name: str, needs: tuple[str, ...]):
    def deco(fn):
        doc = next(iter((fn.__doc__ or "").strip().splitlines()), "")
        LOSSES.add(name, LossEntry(fn=fn, needs=frozenset(needs), doc=doc))
        return fn

    return deco


def get_loss(name: str) -> LossEntry:
    return LOSSES.lookup(name)


@register_loss("cosine", needs=("embedding",))
def cosine_loss(s: Outputs, t: Outputs) -> torch.Tensor:
    """1 - cosine similarity between student and teacher sentence embeddings, batch mean."""
    return (1.0 - F.cosine_similarity(s.embedding, t.embedding, dim=-1)).mean()


@register_loss("mse", needs=("embedding",))
def embedding_mse(s: Outputs, t: Outputs) -> torch.Tensor:
    """Mean squared error between sentence embeddings, summed over dimensions, batch mean."""
    return (s.embedding - t.embedding).pow(2).sum(-1).mean()


@register_loss("hidden_mse", needs=("hidden",))
def hidden_mse(s: Outputs, t: Outputs) -> torch.Tensor:
    """MSE between paired intermediate token states over real tokens, averaged over paired layers."""
    if not s.hidden:
        raise ValueError("hidden_mse needs at least one paired layer")
    mask = s.mask.unsqueeze(-1).to(next(iter(s.hidden.values())).dtype)
    denom = mask.sum() * next(iter(s.hidden.values())).shape[-1]
    total = 0.0
    for layer, hs in s.hidden.items():
        total = total + ((hs - t.hidden[layer]).pow(2) * mask).sum() / denom
    return total / len(s.hidden)
