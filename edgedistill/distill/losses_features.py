"""Feature-based losses: hidden states through a learned projection (FitNets) and
self-attention transfer (MiniLM / TinyBERT: attention distributions and value relations).

Attention is recomputed from each block's query/key/value projections applied to
the block's input states, so it works with any attention kernel (sdpa included)
and the teacher side can come from cached token states.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .losses import Outputs, register_loss

_MASKED = -1e9
"""Score for padding keys: exp() underflows to exactly 0 while log-probabilities stay finite."""


def _masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err [B, T, H]`` over real tokens and features."""
    m = mask.unsqueeze(-1).to(err.dtype)
    return (err * m).sum() / (m.sum() * err.shape[-1]).clamp_min(1.0)


@register_loss("fitnets", needs=("hidden",))
def fitnets(s: Outputs, t: Outputs) -> torch.Tensor:
    """FitNets hints: MSE of (learned linear projection of) student states vs the mapped teacher states."""
    if not s.hidden:
        raise ValueError("fitnets needs at least one paired layer")
    total = 0.0
    for layer, hs in s.hidden.items():
        hs = s.projector(layer, hs) if s.projector is not None else hs
        ht = t.hidden[layer].to(hs.dtype)
        if hs.shape[-1] != ht.shape[-1]:
            raise ValueError(f"student layer {layer} width {hs.shape[-1]} != teacher width {ht.shape[-1]}")
        total = total + _masked_mean((hs - ht).pow(2), s.mask)
    return total / len(s.hidden)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, h = x.shape
    return x.view(b, n, heads, h // heads).transpose(1, 2)


def block_qkv(block, hidden: torch.Tensor, heads: int):
    """Query, key, value ``[B, heads, T, d]`` of a BERT- or MPNet-style block for its input states."""
    att = block.attention
    sa = getattr(att, "self", None) or getattr(att, "attn", None)
    q = getattr(sa, "query", None) or getattr(sa, "q", None)
    k = getattr(sa, "key", None) or getattr(sa, "k", None)
    v = getattr(sa, "value", None) or getattr(sa, "v", None)
    if q is None or k is None or v is None:
        raise ValueError(f"{type(block).__name__}: no query/key/value projections found for attention transfer")
    hidden = hidden.to(q.weight.device)
    return tuple(split_heads(f(hidden), heads) for f in (q, k, v))


def _relation_log_probs(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log softmax(a b^T / sqrt(d)) over real keys: ``[B, heads, T, T]``."""
    scores = a.float() @ b.float().transpose(-1, -2) / math.sqrt(a.shape[-1])
    scores = scores.masked_fill(mask[:, None, None, :] == 0, _MASKED)
    return F.log_softmax(scores, dim=-1)


def _relation_kl(pairs, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher row || student row), averaged over heads and real query tokens, then over layers."""
    total = 0.0
    for log_t, log_s in pairs:
        if log_t.shape != log_s.shape:
            raise ValueError(f"attention shapes differ: teacher {tuple(log_t.shape)} vs student {tuple(log_s.shape)}")
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # [B, heads, T]
        m = mask[:, None, :].to(kl.dtype)
        total = total + (kl * m).sum() / (m.sum() * kl.shape[1]).clamp_min(1.0)
    return total / max(len(pairs), 1)


@register_loss("attention_kl", needs=("qkv",))
def attention_kl(s: Outputs, t: Outputs) -> torch.Tensor:
    """MiniLM/TinyBERT attention transfer: KL between teacher and student self-attention distributions."""
    pairs = [(_relation_log_probs(t.qkv[i][0], t.qkv[i][1], s.mask),
              _relation_log_probs(q, k, s.mask)) for i, (q, k, _) in s.qkv.items()]
    return _relation_kl(pairs, s.mask)


@register_loss("value_relation", needs=("qkv",))
def value_relation(s: Outputs, t: Outputs) -> torch.Tensor:
    """MiniLM value relation: KL between softmax(V V^T / sqrt(d)) of teacher and student."""
    pairs = [(_relation_log_probs(t.qkv[i][2], t.qkv[i][2], s.mask),
              _relation_log_probs(v, v, s.mask)) for i, (_, _, v) in s.qkv.items()]
    return _relation_kl(pairs, s.mask)
