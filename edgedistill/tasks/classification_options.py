"""The ``[distill]`` options every classification strategy reads (torch-free, so recipes parse without torch).

Strategies that need more keys extend :class:`ClassificationOptions` in their own module
(``EmaOptions`` in ``distill/strategy_self.py``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..distill.options import NoOptions
from ..schema import fail_key as _fail


@dataclass
class ClassificationOptions(NoOptions):
    """``[distill]`` keys every classification strategy reads (logit-loss settings, schedules,
    born-again generations, multi-teacher KD, curriculum, teacher assistants)."""

    temperature: float = 2.0
    """Softmax temperature of the logit losses (kd, reverse_kl, jsd, label_smoothing, sorted_prob)."""
    jsd_beta: float = 0.5
    """Teacher share of the mixture in the generalised JSD loss."""
    smoothing: float = 0.1
    """Probability mass the label_smoothing virtual teacher spreads over the wrong classes."""
    final_weights: dict[str, float] = field(default_factory=dict)
    """Loss name -> weight at the last step; weights move linearly from ``losses`` (alpha schedules)."""
    final_temperature: float | None = None
    """Temperature at the last step; it moves linearly from ``temperature`` (temperature annealing)."""
    generations: int = 1
    """Born-again distillation: generation k teaches generation k + 1."""
    teachers: list[str] = field(default_factory=list)
    """Multi-teacher KD: more classifier folders whose logits join the [teacher]'s."""
    ensemble: Literal["mean", "confidence"] = "mean"
    """How the teachers' logits combine: plain mean, or per-example weights from each teacher's confidence."""
    ensemble_confidence: Literal["max_prob", "entropy"] = "max_prob"
    """``ensemble = "confidence"``: weight by the max probability, or by softmax of the negative entropy."""
    curriculum: Literal["none", "teacher_confidence", "teacher_loss"] = "none"
    """Sample batches from a pool of the easiest examples (by the teacher) that grows to all."""
    curriculum_fraction: float = 0.5
    """Share of training over which the curriculum pool grows to every example."""
    curriculum_start: float = 0.25
    """Share of the (easiest) examples in the pool at the first step."""
    assistants: list[list[int]] = field(default_factory=list)
    """Teacher-assistant chain: teacher blocks each assistant keeps, largest first."""

    def validate(self, where: str) -> None:
        if self.temperature <= 0:
            _fail(where, "temperature", f"expected a number > 0, got {self.temperature}")
        if not 0 < self.jsd_beta < 1:
            _fail(where, "jsd_beta", f"expected a number in (0, 1), got {self.jsd_beta}")
        if not 0 <= self.smoothing < 1:
            _fail(where, "smoothing", f"expected a number in [0, 1), got {self.smoothing}")
        if self.final_temperature is not None and self.final_temperature <= 0:
            _fail(where, "final_temperature", f"expected a number > 0, got {self.final_temperature}")
        if self.generations < 1:
            _fail(where, "generations", f"expected >= 1, got {self.generations}")
        if not 0 < self.curriculum_fraction <= 1:
            _fail(where, "curriculum_fraction", f"expected a number in (0, 1], got {self.curriculum_fraction}")
        if not 0 < self.curriculum_start <= 1:
            _fail(where, "curriculum_start", f"expected a number in (0, 1], got {self.curriculum_start}")
        for i, layers in enumerate(self.assistants):
            if not layers or any(t < 0 for t in layers) or len(set(layers)) != len(layers):
                _fail(where, f"assistants[{i}]", f"expected distinct non-negative teacher layers, got {layers}")
            if i and len(layers) >= len(self.assistants[i - 1]):
                _fail(where, f"assistants[{i}]", f"{len(layers)} layers after {len(self.assistants[i - 1])}: "
                      "list assistants largest first")

    def scheduled_losses(self) -> dict[str, float]:
        return dict(self.final_weights)

    def cross_check(self, spec, where: str) -> None:
        for name, w in self.final_weights.items():
            if name not in spec.losses:
                _fail(where, f"final_weights.{name}", f"not in 'losses' ({', '.join(spec.losses)}); "
                      "schedule only losses you use")
            if w < 0:
                _fail(where, f"final_weights.{name}", f"expected a weight >= 0, got {w}")
