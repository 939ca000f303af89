"""Classification distillation: a student classifier learns from the teacher's cached logits,
token states and attention, and/or from hard labels, through any weighted mix of registered losses.

What the teacher must provide follows from the losses named in the recipe: logits for
``kd``/``jsd``/..., token states of the mapped layers for ``fitnets``/``hidden_mse``, the
input states of the last mapped block for ``attention_kl``/``value_relation`` (attention is
recomputed from the teacher block's own query/key/value projections). Losses that need only
labels (``hard_ce``, ``label_smoothing``) make the run teacher-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RecipeError
from ..tasks.classification_options import ClassificationOptions
from .losses import Outputs, get_loss
from .losses_features import block_qkv
from .protocol import StrategyBase
from .strategies import register_strategy
from .teacher_cache import TeacherTargets

PROVIDES = frozenset({"logits", "labels", "hidden", "qkv"})


def _blocks(model):
    return model.base_model.encoder.layer


def check_needs(entries: dict, provides: frozenset[str], strategy: str, hint: str = "") -> None:
    for name, e in entries.items():
        missing = sorted(e.needs - provides)
        if missing:
            hint = hint or f"use strategy = {'classification' if strategy == 'embedding' else 'embedding'!r}"
            raise RecipeError(f"[distill] key 'losses': loss {name!r} needs {', '.join(missing)}, which strategy "
                              f"{strategy!r} does not provide ({hint} or another loss)")


@dataclass
class TeacherCache:
    """What was cached for the training texts (rows align with them)."""

    logits: np.ndarray | None = None
    targets: TeacherTargets | None = None
    """Token states; hidden_states index (0 = embeddings, i + 1 = block i)."""


@register_strategy("classification")
class ClassificationStrategy(StrategyBase):
    """Logit, feature and attention KD into a student ``...ForSequenceClassification``."""

    task = "classification"
    Options = ClassificationOptions

    def __init__(self, spec, layer_map: dict[int, int], student_config, teacher_config, teacher_blocks=None):
        o = spec.options
        self.base_weights = {name: w for name, w in spec.losses.items() if w > 0 or o.final_weights.get(name, 0) > 0}
        if not self.base_weights:
            raise RecipeError("[distill] key 'losses': every weight is 0; nothing to train")
        self.final_weights = {name: o.final_weights.get(name, spec.losses[name]) for name in self.base_weights}
        self.entries = {name: get_loss(name) for name in self.base_weights}
        check_needs(self.entries, PROVIDES, "classification")
        self.loss_params = {"temperature": o.temperature, "jsd_beta": o.jsd_beta, "smoothing": o.smoothing,
                            "final_temperature": o.final_temperature}
        needs = set().union(*(e.needs for e in self.entries.values()))
        self.needs_logits = "logits" in needs
        self.needs_hidden = "hidden" in needs
        self.needs_qkv = "qkv" in needs
        self.layer_map = layer_map
        # MiniLM transfers the last block's attention only: it carries the most task-shaped relations
        # and costs one block of attention maps instead of all.
        self.attn_pair = max(layer_map.items()) if self.needs_qkv and layer_map else None
        self.teacher_blocks = teacher_blocks
        self.heads = student_config.num_attention_heads
        self.projections = torch.nn.ModuleDict()
        self._check_shapes(student_config, teacher_config)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.base_weights)

    def _check_shapes(self, s_cfg, t_cfg) -> None:
        sw, tw = s_cfg.hidden_size, t_cfg.hidden_size
        if self.needs_hidden and sw != tw:
            if "hidden_mse" in self.entries:
                pairs = ", ".join(f"student {s} -> teacher {t}" for s, t in self.layer_map.items())
                raise RecipeError(f"[distill] key 'losses': hidden_mse compares student width {sw} with teacher "
                                  f"width {tw} at layers {pairs}; use 'fitnets' (learns a {sw}->{tw} projection) "
                                  "or remove those pairs from [distill] layer_map")
            for s in self.layer_map:
                self.projections[str(s)] = torch.nn.Linear(sw, tw)
        if self.needs_qkv:
            s_head, t_head = sw // s_cfg.num_attention_heads, tw // t_cfg.num_attention_heads
            if (s_cfg.num_attention_heads, s_head) != (t_cfg.num_attention_heads, t_head):
                s, t = self.attn_pair
                raise RecipeError(f"[distill] key 'losses': attention transfer pairs student layer {s} "
                                  f"({s_cfg.num_attention_heads} heads x {s_head}) with teacher layer {t} "
                                  f"({t_cfg.num_attention_heads} heads x {t_head}); the head counts and sizes "
                                  "must match: map the student's last layer to a teacher layer of the same shape "
                                  "in [distill] layer_map, or drop attention_kl / value_relation")

    def extra_parameters(self):
        """Trainable parameters the strategy owns (FitNets projections), optimised with the student's."""
        return list(self.projections.parameters())

    def _project(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        key = str(layer)
        return self.projections[key](h) if key in self.projections else h

    def teacher_hidden_indices(self) -> list[int]:
        idx = set()
        if self.needs_hidden:
            idx |= {t + 1 for t in self.layer_map.values()}
        if self.needs_qkv:
            idx.add(self.attn_pair[1])  # the block's input states
        return sorted(idx)

    def weights_at(self, frac: float) -> dict[str, float]:
        """Loss weights a fraction ``frac`` (0..1) of the way through training."""
        return {n: w + (self.final_weights[n] - w) * frac for n, w in self.base_weights.items()}

    def temperature_at(self, frac: float) -> float:
        """Softmax temperature ``frac`` (0..1) of the way through training (linear annealing)."""
        t0, t1 = self.loss_params["temperature"], self.loss_params["final_temperature"]
        return t0 if t1 is None else t0 + (t1 - t0) * frac

    def teacher_batch(self, cache: TeacherCache, idx, width: int, mask) -> Outputs:
        out = Outputs(mask=mask)
        if self.needs_logits:
            out.logits = torch.from_numpy(np.ascontiguousarray(cache.logits[idx]))
        if self.needs_hidden or self.needs_qkv:
            states = {}
            for layer in self.teacher_hidden_indices():
                arr = np.zeros((len(idx), width, cache.targets.hidden[layer].shape[1]), dtype=np.float32)
                for row, i in enumerate(idx):
                    h = cache.targets.hidden_for(i, layer)
                    arr[row, : len(h)] = h
                states[layer] = torch.from_numpy(arr)
            if self.needs_hidden:
                out.hidden = {s: states[t + 1] for s, t in self.layer_map.items()}
            if self.needs_qkv:
                s, t = self.attn_pair
                with torch.no_grad():
                    out.qkv = {s: block_qkv(self.teacher_blocks[t], states[t], self.heads)}
        return out

    def loss(self, student, feats: dict, teacher: Outputs, labels: torch.Tensor,
             frac: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        want_states = self.needs_hidden or self.needs_qkv
        out = student(**feats, output_hidden_states=want_states)
        s = Outputs(logits=out.logits, labels=labels, mask=feats["attention_mask"], projector=self._project)
        if self.needs_hidden:
            s.hidden = {i: out.hidden_states[i + 1] for i in self.layer_map}
        if self.needs_qkv:
            i = self.attn_pair[0]
            s.qkv = {i: block_qkv(_blocks(student)[i], out.hidden_states[i], self.heads)}
        total = 0.0
        parts = {}
        options = {**self.loss_params, "temperature": self.temperature_at(frac)}
        for name, w in self.weights_at(frac).items():
            kw = {p: options[p] for p in self.entries[name].params}
            value = self.entries[name].fn(s, teacher, **kw).float()
            parts[name] = float(value.detach())
            total = total + w * value
        return total, parts
