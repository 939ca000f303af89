"""Stage-wise distillation (progressive, shallow to deep, then outputs).

Training is split into equal phases. In phase k (one per mapped student layer, shallowest
first) the student's mapped layers up to the k-th learn the teacher's hidden states (FitNets:
learned projection when widths differ) while every deeper block, the pooler and the head are
frozen; the last phase trains everything on the recipe's ``losses`` (e.g. ``kd`` + ``hard_ce``).
Freezing happens in ``before_step``, so the optimiser skips the frozen weights (their gradients
stay ``None``) and later phases start from the features the earlier ones built.
"""

from __future__ import annotations

import torch

from .losses import Outputs, get_loss
from .strategies import register_strategy
from .strategy_cls import ClassificationStrategy, _blocks


@register_strategy("stagewise")
class StagewiseStrategy(ClassificationStrategy):
    token_level = True
    """Needs the teacher's token states, so a shared tokenizer (see compat.py)."""

    def __init__(self, spec, layer_map, student_config, teacher_config, teacher_blocks=None):
        super().__init__(spec, layer_map, student_config, teacher_config, teacher_blocks)
        self.fit = get_loss("fitnets")
        self.needs_hidden = True
        self.stages = sorted(layer_map)
        if student_config.hidden_size != teacher_config.hidden_size:
            for s in self.stages:
                self.projections.setdefault(str(s), torch.nn.Linear(student_config.hidden_size,
                                                                    teacher_config.hidden_size))
        self._initial: dict | None = None
        self._phase: int | None = None

    @property
    def n_phases(self) -> int:
        return len(self.stages) + 1

    def phase(self, frac: float) -> int:
        """0..len(stages)-1: feature phases (shallow first); len(stages): the output phase."""
        return min(int(frac * self.n_phases), self.n_phases - 1)

    def before_step(self, student, frac: float) -> None:
        phase = self.phase(frac)
        if phase == self._phase:
            return
        if self._initial is None:  # what the trainer froze itself (word embeddings) stays frozen
            self._initial = {n: p.requires_grad for n, p in student.named_parameters()}
        deepest = self.stages[phase] if phase < len(self.stages) else None
        trainable = {n for n, p in student.named_parameters()}
        if deepest is not None:
            blocks = _blocks(student)
            frozen = {id(p) for i, b in enumerate(blocks) if i > deepest for p in b.parameters()}
            body = {id(p) for b in blocks for p in b.parameters()}
            emb = {id(p) for p in student.base_model.embeddings.parameters()}
            # Only the embeddings and blocks 0..deepest feed the mapped states; the rest waits.
            trainable = {n for n, p in student.named_parameters()
                         if id(p) in emb or (id(p) in body and id(p) not in frozen)}
        for n, p in student.named_parameters():
            p.requires_grad_(self._initial[n] and n in trainable)
        self._phase = phase

    def loss(self, student, feats: dict, teacher: Outputs, labels: torch.Tensor,
             frac: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        phase = self.phase(frac)
        if phase == len(self.stages):
            return super().loss(student, feats, teacher, labels, frac)
        layers = [s for s in self.stages if s <= self.stages[phase]]
        out = student(**feats, output_hidden_states=True)
        s = Outputs(mask=feats["attention_mask"], projector=self._project,
                    hidden={i: out.hidden_states[i + 1] for i in layers})
        t = Outputs(hidden={i: teacher.hidden[i] for i in layers})
        value = self.fit.fn(s, t).float()
        return value, {f"fitnets_stage{phase + 1}": float(value.detach())}
