"""Response-based losses on classifier logits, and the teacher-free ones that need only labels.

Temperature-softened losses are multiplied by T^2 so their gradients keep the
same scale as T changes (Hinton et al., 2015). Only rows with a hard label
(``labels >= 0``) count for the label losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import Outputs, register_loss


def _log_soft(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.log_softmax(logits.float() / temperature, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@register_loss("kd", needs=("logits",), params=("temperature",))
def kd(s: Outputs, t: Outputs, temperature: float = 2.0) -> torch.Tensor:
    """Standard KD: KL(teacher_T || student_T) x T^2, batch mean."""
    return _kl(_log_soft(t.logits, temperature), _log_soft(s.logits, temperature)).mean() * temperature**2


@register_loss("reverse_kl", needs=("logits",), params=("temperature",))
def reverse_kl(s: Outputs, t: Outputs, temperature: float = 2.0) -> torch.Tensor:
    """Reverse KL(student_T || teacher_T) x T^2: mode-seeking, the student may ignore minor teacher modes."""
    return _kl(_log_soft(s.logits, temperature), _log_soft(t.logits, temperature)).mean() * temperature**2


@register_loss("jsd", needs=("logits",), params=("temperature", "jsd_beta"))
def jsd(s: Outputs, t: Outputs, temperature: float = 2.0, jsd_beta: float = 0.5) -> torch.Tensor:
    """Generalised Jensen-Shannon: beta KL(T||M) + (1-beta) KL(S||M), M = beta T + (1-beta) S; x T^2."""
    lt, ls = _log_soft(t.logits, temperature), _log_soft(s.logits, temperature)
    lm = torch.logsumexp(torch.stack([lt + torch.log(torch.tensor(jsd_beta)),
                                      ls + torch.log(torch.tensor(1.0 - jsd_beta))]), dim=0)
    return (jsd_beta * _kl(lt, lm) + (1 - jsd_beta) * _kl(ls, lm)).mean() * temperature**2


def _labelled(s: Outputs) -> tuple[torch.Tensor, torch.Tensor]:
    keep = s.labels >= 0
    return s.logits[keep], s.labels[keep]


@register_loss("hard_ce", needs=("labels",))
def hard_ce(s: Outputs, t: Outputs) -> torch.Tensor:
    """Cross-entropy against the hard labels (teacher-free), mean over labelled rows."""
    logits, labels = _labelled(s)
    if not len(labels):
        return s.logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels)


@register_loss("label_smoothing", needs=("labels",), params=("temperature", "smoothing"))
def label_smoothing(s: Outputs, t: Outputs, temperature: float = 2.0, smoothing: float = 0.1) -> torch.Tensor:
    """Virtual teacher (Tf-KD): KL(smoothed one-hot || student_T) x T^2, no teacher model needed."""
    logits, labels = _labelled(s)
    if not len(labels):
        return s.logits.sum() * 0.0
    k = logits.shape[-1]
    target = torch.full_like(logits, smoothing / max(k - 1, 1), dtype=torch.float32)
    target.scatter_(1, labels[:, None], 1.0 - smoothing)
    log_target = target.clamp_min(1e-12).log()
    return _kl(log_target, _log_soft(logits, temperature)).mean() * temperature**2


@register_loss("sorted_prob", needs=("logits",), params=("temperature",))
def sorted_prob(s: Outputs, t: Outputs, temperature: float = 2.0) -> torch.Tensor:
    """Tokenizer-agnostic: L1 distance between the sorted probability vectors (zero-padded), batch mean.

    Needs no class/vocabulary alignment (Universal Logit Distillation, Boizard et al. 2024), so a
    teacher and student with different label sets or vocabularies can still be paired.
    """
    ps = _log_soft(s.logits, temperature).exp().sort(-1, descending=True).values
    pt = _log_soft(t.logits, temperature).exp().sort(-1, descending=True).values
    width = max(ps.shape[-1], pt.shape[-1])
    ps = F.pad(ps, (0, width - ps.shape[-1]))
    pt = F.pad(pt, (0, width - pt.shape[-1]))
    return (ps - pt).abs().sum(-1).mean()
