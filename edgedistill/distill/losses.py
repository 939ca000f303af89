"""Knowledge-distillation losses, registered by name.

A loss is a function ``(student: Outputs, teacher: Outputs, **params) -> scalar``.
Recipes combine them by name with weights (``[distill] losses = {cosine = 1.0,
hidden_mse = 1.0}``); adding a loss is one decorated function and one test.
Logit losses live in :mod:`.losses_logits`, feature losses with learned
projections and attention transfer in :mod:`.losses_features`.
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
    logits: torch.Tensor | None = None
    """Classifier logits ``[B, C]``."""
    labels: torch.Tensor | None = None
    """Hard labels ``[B]`` (student side; -100 = unlabelled row)."""
    qkv: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Per paired *student* layer: query, key, value ``[B, heads, T, head_dim]`` of that block's self-attention."""
    projector: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    """Student side: learned map of a student layer's states to the teacher's width (FitNets regressor)."""
    own_embedding: torch.Tensor | None = None
    """Student side: the pooled embedding in the student's own space, before the training-only projection to
    the teacher's width (the embedding strategy sets it; None elsewhere, where ``embedding`` is that space)."""


@dataclass(frozen=True)
class LossEntry:
    fn: Callable[..., torch.Tensor]
    needs: frozenset[str]
    """Which fields of :class:`Outputs` the loss reads ("embedding", "hidden", "logits", "labels", "qkv")."""
    doc: str
    params: tuple[str, ...] = ()
    """Recipe options passed as keyword arguments (e.g. "temperature")."""


LOSSES: Registry[LossEntry] = Registry("loss", "[distill] key 'losses'")


def register_loss(name: str, needs: tuple[str, ...], params: tuple[str, ...] = ()):
    def deco(fn):
        doc = next(iter((fn.__doc__ or "").strip().splitlines()), "")
        LOSSES.add(name, LossEntry(fn=fn, needs=frozenset(needs), doc=doc, params=tuple(params)))
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


@register_loss("pair_similarity", needs=("embedding",))
def pair_similarity(s: Outputs, t: Outputs) -> torch.Tensor:
    """MSE between the batch's pairwise cosine similarities in the student's own space and the teacher's."""
    # Similarity-preserving KD (Tung & Mori 2019). The student's own space, not the projected one: the exported
    # student ships without the projection, so its users rank sentences by cosines in that space, and a
    # projection can map embeddings onto the teacher's while their own geometry stays poor.
    own = s.own_embedding if s.own_embedding is not None else s.embedding
    if len(own) < 2:
        return own.sum() * 0.0  # one sentence has no pairs
    a, b = F.normalize(own, dim=-1), F.normalize(t.embedding, dim=-1)
    off = ~torch.eye(len(own), dtype=torch.bool, device=own.device)
    return ((a @ a.T) - (b @ b.T))[off].pow(2).mean()


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


# The rest of the catalogue registers itself on import.
from . import losses_features, losses_logits  # noqa: E402, F401
