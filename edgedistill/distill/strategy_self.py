"""Teacher-free classification strategies: the targets come from students, not from a fixed teacher.

- ``ema_self``: an exponential moving average of the student's own weights is its pseudo-teacher
  (mean-teacher style); the logit losses compare the student with the EMA's predictions.
- ``mutual``: deep mutual learning; ``peers`` (default 2) students of the same architecture train
  together, each learning from the labels and from every other peer's (detached) predictions, the
  loss averaged over the others. Peer 0 is the result.

Both reuse the classification strategy's loss mixing and schedules; only where the "teacher"
logits come from differs, so the teacher's own outputs are never computed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..schema import fail_key as _fail
from .losses import Outputs
from .strategies import register_strategy
from .strategy_cls import ClassificationOptions, ClassificationStrategy, check_needs

_LOGITS_ONLY = frozenset({"logits", "labels"})


@dataclass
class EmaOptions(ClassificationOptions):
    ema_decay: float = 0.99
    """Per-step decay of the EMA pseudo-teacher."""

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 0 < self.ema_decay < 1:
            _fail(where, "ema_decay", f"expected a number in (0, 1), got {self.ema_decay}")


@dataclass
class PeerOptions(ClassificationOptions):
    peers: int = 2
    """Students trained together (peer 0 is saved)."""

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 2 <= self.peers <= 16:
            _fail(where, "peers", f"expected 2..16, got {self.peers}")


class _StudentTeacher(ClassificationStrategy):
    teacher_free = True

    def __init__(self, spec, layer_map, student_config, teacher_config, teacher_blocks=None):
        super().__init__(spec, layer_map, student_config, teacher_config, teacher_blocks)
        check_needs(self.entries, _LOGITS_ONLY, self.name, "its pseudo-teacher gives logits only: use logit and "
                    "label losses, or strategy = 'classification' for feature losses,")
        self.needs_logits = False  # nothing to cache: the targets are computed from students each step

    def teacher_batch(self, cache, idx, width: int, mask) -> Outputs:
        return Outputs(mask=mask)


class PeerGroup(torch.nn.Module):
    """N peers trained as one module; calling it runs peer 0 (what is evaluated and saved)."""

    def __init__(self, *peers):
        super().__init__()
        self.peers = torch.nn.ModuleList(peers)

    def forward(self, **kw):
        return self.peers[0](**kw)

    def get_input_embeddings(self):
        return _Tied([p.get_input_embeddings().weight for p in self.peers])


PeerPair = PeerGroup  # the two-peer name earlier code and tests use


class _Tied:
    """Lets the trainer freeze both peers' word tables through one ``.weight.requires_grad_``."""

    def __init__(self, weights):
        self.weight = self
        self._weights = weights

    def requires_grad_(self, flag: bool):
        for w in self._weights:
            w.requires_grad_(flag)
        return self


@register_strategy("ema_self")
class EmaSelfStrategy(_StudentTeacher):
    """Self-distillation from an EMA snapshot of the student (pseudo-teacher)."""

    name = "ema_self"
    Options = EmaOptions

    def __init__(self, spec, *a, **kw):
        super().__init__(spec, *a, **kw)
        self.decay = spec.options.ema_decay
        self.ema = None

    def prepare_student(self, student):
        self.ema = copy.deepcopy(student).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        return student

    def checkpoint_state(self) -> dict:
        """What a training checkpoint must carry besides the student: the EMA weights."""
        return dict(self.ema.state_dict())

    def load_checkpoint_state(self, state: dict) -> None:
        self.ema.load_state_dict(state)

    @torch.no_grad()
    def after_step(self, student) -> None:
        for e, s in zip(self.ema.state_dict().values(), student.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(self.decay).add_(s.detach(), alpha=1 - self.decay)

    def loss(self, student, feats, teacher, labels, frac=0.0):
        with torch.no_grad():
            teacher.logits = self.ema(**feats).logits.float()
        return super().loss(student, feats, teacher, labels, frac)


@register_strategy("mutual")
class MutualStrategy(_StudentTeacher):
    """Deep mutual learning of N peers; each peer learns from every other peer's predictions."""

    name = "mutual"
    Options = PeerOptions

    def __init__(self, spec, *a, **kw):
        super().__init__(spec, *a, **kw)
        self.n_peers = spec.options.peers

    def prepare_student(self, student):
        peers = [student]
        for i in range(1, self.n_peers):
            peer = copy.deepcopy(student)
            # Identical peers fed identical batches would stay identical; a small seeded perturbation
            # gives them different starting points, as different initialisations do in DML.
            gen = torch.Generator().manual_seed(i)
            with torch.no_grad():
                for p in peer.parameters():
                    if p.dim() >= 2:
                        p.add_(torch.randn(p.shape, generator=gen) * 0.02 * p.std())
            peers.append(peer)
        return PeerGroup(*peers)

    def targets(self, outs: list[torch.Tensor], i: int) -> list[torch.Tensor]:
        """The detached logits that teach peer ``i``: every other peer's (their losses are averaged)."""
        return [o.detach().float() for j, o in enumerate(outs) if j != i]

    def loss(self, group, feats, teacher, labels, frac=0.0):
        outs = [peer(**feats).logits for peer in group.peers]
        total, parts = 0.0, {}
        for i, out in enumerate(outs):
            targets = self.targets(outs, i)
            for t in targets:
                t_i, p_i = super().loss(_Fixed(out), feats, Outputs(logits=t, mask=teacher.mask), labels, frac)
                total = total + t_i / len(targets)
                for k, v in p_i.items():
                    parts[k] = parts.get(k, 0.0) + v / (len(outs) * len(targets))
        return total, parts


class _Fixed:
    """A callable standing in for a peer whose logits were already computed this step."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, **_):
        return self
