"""Token-level KD losses on the teacher's top-k next-token distribution, registered by name.

The teacher is stored as its k most likely tokens per position (log-probs at
T = 1 and their ids). Two ways to treat the rest of the vocabulary:

* ``tail="bucket"`` (default): the distribution is coarsened to k + 1 outcomes,
  the k tokens plus one "everything else" bucket holding ``1 - sum(top-k)``, for
  teacher and student alike. At T = 1 this is an exact coarsening, so every
  divergence is a true lower bound of the full-vocabulary one. At T != 1 the
  teacher's tail is tempered as if it were one token (an approximation).
  Needs the student's full-vocabulary log-normaliser.
* ``tail="renorm"``: both sides renormalised over the k tokens. The student's
  k logits come from k rows of the output matrix, so the full-vocabulary
  logits are never built (cheapest on CPU; the hard-label term, if any, still
  needs them).

A divergence maps ``(s_log, t_log)``, each ``[n, m]`` log-probabilities over the
same m outcomes, to a per-position loss ``[n]``. Losses are multiplied by T^2
so that gradients keep their scale across temperatures (Hinton et al.).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..registry import Registry

Divergence = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class TokenLoss:
    fn: Divergence
    doc: str


TOKEN_LOSSES: Registry[TokenLoss] = Registry("token KD loss", "[distill] key 'loss' (LLM recipe)")
TAILS = ("bucket", "renorm")
_TINY = 1e-6


def register_token_loss(name: str):
    def deco(fn):
        TOKEN_LOSSES.add(name, TokenLoss(fn=fn, doc=next(iter((fn.__doc__ or "").strip().splitlines()), "")))
        return fn

    return deco


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@register_token_loss("forward_kl")
def forward_kl(s_log: torch.Tensor, t_log: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student): mass-covering, the classic Hinton KD objective."""
    return _kl(t_log, s_log)


@register_token_loss("reverse_kl")
def reverse_kl(s_log: torch.Tensor, t_log: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher): mode-seeking (MiniLLM); the student need not cover every teacher mode."""
    return _kl(s_log, t_log)


@register_token_loss("jsd")
def generalized_jsd(s_log: torch.Tensor, t_log: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Generalised JSD (GKD): beta KL(T || M) + (1 - beta) KL(S || M), M = beta T + (1 - beta) S."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must be in (0, 1), got {beta}")
    log_m = torch.logsumexp(torch.stack([t_log + torch.log(torch.tensor(beta)),
                                         s_log + torch.log(torch.tensor(1.0 - beta))]), dim=0)
    return beta * _kl(t_log, log_m) + (1.0 - beta) * _kl(s_log, log_m)


def teacher_log_probs(t_logp: torch.Tensor, temperature: float, tail: str) -> torch.Tensor:
    """``[n, k]`` cached top-k log-probs -> ``[n, k(+1)]`` tempered log-probs over the outcomes."""
    t_logp = t_logp.float()
    if tail == "bucket":
        rest = torch.log1p(-t_logp.exp().sum(-1, keepdim=True).clamp(max=1 - _TINY))
        t_logp = torch.cat([t_logp, rest], dim=-1)
    return F.log_softmax(t_logp / temperature, dim=-1)


def student_log_probs(logits: torch.Tensor, t_idx: torch.Tensor, temperature: float, tail: str) -> torch.Tensor:
    """``[n, V]`` student logits -> ``[n, k(+1)]`` tempered log-probs over the teacher's outcomes."""
    picked = logits.gather(-1, t_idx.long()) / temperature
    if tail == "renorm":
        return F.log_softmax(picked, dim=-1)
    log_top = picked - torch.logsumexp(logits / temperature, dim=-1, keepdim=True)
    top_mass = torch.logsumexp(log_top, dim=-1, keepdim=True).exp().clamp(max=1 - _TINY)
    return torch.cat([log_top, torch.log1p(-top_mass)], dim=-1)


def topk_kd(logits: torch.Tensor, t_logp: torch.Tensor, t_idx: torch.Tensor, loss: str = "forward_kl",
            temperature: float = 1.0, tail: str = "bucket", **params) -> torch.Tensor:
    """Per-position KD loss ``[n]`` from full student logits ``[n, V]`` and the teacher's top-k."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
    fn = TOKEN_LOSSES.lookup(loss).fn
    s_log = student_log_probs(logits.float(), t_idx, temperature, tail)
    t_log = teacher_log_probs(t_logp, temperature, tail)
    return fn(s_log, t_log, **params) * temperature**2


@dataclass
class LossParts:
    kd: torch.Tensor | None
    """Mean KD loss over positions (None when no teacher targets were given)."""
    ce: torch.Tensor | None
    """Mean next-token cross-entropy (None when no labels were given)."""
    positions: int


def chunked_token_loss(hidden: torch.Tensor, out_weight: torch.Tensor, *, labels: torch.Tensor | None = None,
                       t_logp: torch.Tensor | None = None, t_idx: torch.Tensor | None = None,
                       loss: str = "forward_kl", temperature: float = 1.0, tail: str = "bucket",
                       chunk: int = 256, recompute: bool = True, **params) -> LossParts:
    """KD and/or hard-label loss from final hidden states, a chunk of positions at a time.

    ``hidden`` is ``[N, H]`` (already normed), ``out_weight`` the ``[V, H]`` output
    matrix, ``labels`` ``[N]`` next-token ids (-100 = ignore), ``t_logp``/``t_idx``
    ``[N, k]``. Only one chunk's ``[chunk, V]`` logits exist at a time; with
    ``recompute`` they are rebuilt in the backward pass instead of kept.
    """
    need_full = labels is not None or tail == "bucket"
    kd_sum = hidden.new_zeros(())
    ce_sum = hidden.new_zeros(())
    n_ce = 0

    def piece(h, lab, lp, ix):
        kd = ce = h.new_zeros(())
        if need_full:
            logits = h @ out_weight.t()
            if lp is not None:
                kd = topk_kd(logits, lp, ix, loss, temperature, tail, **params).sum()
            if lab is not None:
                ce = F.cross_entropy(logits.float(), lab, ignore_index=-100, reduction="sum")
        else:
            # renorm without labels: k rows of the output matrix per position, never [n, V]
            picked = torch.einsum("nh,nkh->nk", h, out_weight[ix.long()])
            s_log = F.log_softmax(picked.float() / temperature, dim=-1)
            t_log = teacher_log_probs(lp, temperature, tail)
            kd = TOKEN_LOSSES.lookup(loss).fn(s_log, t_log, **params).sum() * temperature**2
        return kd, ce

    for start in range(0, hidden.shape[0], chunk):
        sl = slice(start, start + chunk)
        args = (hidden[sl], None if labels is None else labels[sl],
                None if t_logp is None else t_logp[sl], None if t_idx is None else t_idx[sl])
        if recompute and hidden.requires_grad:
            kd, ce = checkpoint(piece, *args, use_reentrant=False)
        else:
            kd, ce = piece(*args)
        kd_sum = kd_sum + kd
        ce_sum = ce_sum + ce
        if labels is not None:
            n_ce += int((args[1] != -100).sum())
    n = hidden.shape[0]
    return LossParts(kd=kd_sum / n if t_logp is not None else None,
                     ce=ce_sum / max(n_ce, 1) if labels is not None else None, positions=n)
