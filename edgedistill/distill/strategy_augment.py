"""Augmentation-based distillation: the student learns on edited text (see :mod:`.augment`).

- ``augment_kd``: the student sees the augmented sentence and learns the teacher's cached logits
  for the clean one, so the teacher cache is reused and the student learns to be robust to the edits.
- ``augment_self``: teacher-free consistency; the student's own detached predictions on the clean
  sentence teach its predictions on the augmented one (UDA-style), next to the hard labels.

Token edits break the token alignment with the teacher, so only logit and label losses apply.
The edits are drawn from a generator seeded with ``[distill] seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..schema import fail_key as _fail
from .augment import AugmentSpec, augment_features
from .strategies import register_strategy
from .strategy_cls import ClassificationOptions, ClassificationStrategy, check_needs
from .strategy_self import _StudentTeacher

_HINT = "token edits break the alignment with token-level targets: use logit and label losses,"


@dataclass
class AugmentOptions(ClassificationOptions):
    augment_drop: float = 0.1
    """Share of ordinary tokens removed."""
    augment_swap: float = 0.1
    """Share of ordinary tokens swapped with a neighbour."""
    augment_mask: float = 0.1
    """Share of ordinary tokens backed off to [MASK] (or [UNK])."""

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("augment_drop", "augment_swap", "augment_mask"):
            if not 0 <= getattr(self, key) < 1:
                _fail(where, key, f"expected a share in [0, 1), got {getattr(self, key)}")
        if self.augment_drop + self.augment_swap + self.augment_mask >= 1:
            _fail(where, "augment_drop", "augment_drop + augment_swap + augment_mask must stay below 1")


class _Augmenting:
    Options = AugmentOptions
    aug: AugmentSpec | None = None
    pad_id: int = 0

    def _start(self, spec) -> None:
        self.rng = np.random.default_rng(spec.seed)
        self.spec = spec

    def bind_tokenizer(self, tokenizer) -> None:
        """The special ids (never edited), mask and pad tokens come from the student's tokenizer."""
        self.aug = AugmentSpec.from_recipe(self.spec.options, tokenizer)
        self.pad_id = tokenizer.pad_token_id or 0

    def augment(self, feats: dict) -> dict:
        if self.aug is None:
            raise RuntimeError("augmentation strategy used before bind_tokenizer()")
        return augment_features(feats, self.aug, self.rng, self.pad_id)


@register_strategy("augment_kd")
class AugmentKDStrategy(_Augmenting, ClassificationStrategy):
    """Teacher logits of the clean sentence teach the student on its augmented copy."""

    def __init__(self, spec, layer_map, student_config, teacher_config, teacher_blocks=None):
        super().__init__(spec, layer_map, student_config, teacher_config, teacher_blocks)
        check_needs(self.entries, frozenset({"logits", "labels"}), "augment_kd", _HINT)
        self._start(spec)

    def loss(self, student, feats, teacher, labels, frac=0.0):
        return super().loss(student, self.augment(feats), teacher, labels, frac)


@register_strategy("augment_self")
class AugmentSelfStrategy(_Augmenting, _StudentTeacher):
    """The student's clean-input predictions (detached) teach its augmented-input predictions."""

    name = "augment_self"

    def __init__(self, spec, *a, **kw):
        super().__init__(spec, *a, **kw)
        self._start(spec)

    def loss(self, student, feats, teacher, labels, frac=0.0):
        with torch.no_grad():
            teacher.logits = student(**feats).logits.float()
        return super().loss(student, self.augment(feats), teacher, labels, frac)
