"""Distillation strategies, registered by name.

A strategy decides what the teacher must provide (which cached outputs) and
how one training batch turns into a loss, by combining registered losses with
the recipe's weights. The training loop knows nothing else about KD.
"""

from __future__ import annotations

import torch

from ..errors import RecipeError
from ..models.encode import pool
from ..registry import Registry
from .losses import Outputs, get_loss
from .protocol import StrategyBase

STRATEGIES: Registry[type] = Registry("strategy", "[distill] key 'strategy'")


def register_strategy(name: str):
    return lambda cls: STRATEGIES.add(name, cls)


def get_strategy(name: str) -> type:
    return STRATEGIES.lookup(name)


LAYER_MAP_MODES = ("copied", "uniform", "last_k")


def default_layer_map(kept_layers: list[int], teacher_layers: int | None = None,
                      mode: str = "copied") -> dict[int, int]:
    """The student->teacher layer map used when the recipe gives none.

    ``copied``: each student block pairs with the teacher block it was copied from; ``uniform``:
    student block i of n pairs with teacher block round((i + 1) * T / n) - 1 (spread over depth,
    always ending at the last); ``last_k``: the student's n blocks pair with the teacher's last n."""
    n = len(kept_layers)
    if mode == "copied" or teacher_layers is None:
        return {i: t for i, t in enumerate(kept_layers)}
    if mode == "uniform":
        return {i: max(0, round((i + 1) * teacher_layers / n) - 1) for i in range(n)}
    if mode == "last_k":
        return {i: max(0, teacher_layers - n + i) for i in range(n)}
    raise RecipeError(f"[distill] key 'layer_map_mode': unknown mode {mode!r} (valid: {', '.join(LAYER_MAP_MODES)})")


def resolve_layer_map(spec_map: dict[str, int], kept_layers: list[int], teacher_layers: int,
                      mode: str = "copied") -> dict[int, int]:
    if not spec_map:
        return default_layer_map(kept_layers, teacher_layers, mode)
    out = {}
    n = len(kept_layers)
    for s, t in spec_map.items():
        si = int(s)
        if si >= n:
            raise RecipeError(f"[distill] key 'layer_map.{s}': student layer {si} does not exist (the student has "
                              f"layers 0..{n - 1}); use keys 0..{n - 1} or drop layer_map to use "
                              f"layer_map_mode")
        if not 0 <= t < teacher_layers:
            raise RecipeError(f"[distill] key 'layer_map.{s}': teacher layer {t} does not exist (the teacher has "
                              f"layers 0..{teacher_layers - 1}); map student layer {si} to one "
                              "of those")
        out[si] = t
    return out


def describe_layer_map(layer_map: dict[int, int], spec, mode: str | None = None) -> str:
    """How the run announces its layer map (and where it came from)."""
    src = "from [distill] layer_map" if spec.layer_map else f"layer_map_mode = {mode or spec.layer_map_mode!r}"
    pairs = ", ".join(f"{s}->{t}" for s, t in sorted(layer_map.items()))
    return f"layer map student->teacher {{{pairs}}} ({src})"


@register_strategy("embedding")
class EmbeddingStrategy(StrategyBase):
    """Response + feature KD for sentence encoders.

    The student's pooled embedding is matched to the teacher's ("cosine",
    "mse") and, through the layer map, its block outputs to the teacher's
    ("hidden_mse").
    """

    def __init__(self, losses: dict[str, float], layer_map: dict[int, int], pooling: str, normalize: bool):
        self.weights = {name: w for name, w in losses.items() if w > 0}
        if not self.weights:
            raise RecipeError("[distill] key 'losses': every weight is 0; nothing to train")
        self.entries = {name: get_loss(name) for name in self.weights}
        from .strategy_cls import check_needs

        check_needs(self.entries, frozenset({"embedding", "hidden"}), "embedding")
        self.layer_map = layer_map
        self.pooling = pooling
        self.normalize = normalize
        self.needs_hidden = any("hidden" in e.needs for e in self.entries.values())
        self.projection: torch.nn.Module | None = None

    def attach(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor, ridge: float = 1e-2) -> None:
        """A student narrower or wider than the teacher reaches the teacher's embedding space through a
        linear map learned with it (training only: the exported student keeps its own width).

        The map starts as the ridge least-squares fit between the two models' embeddings of the same
        sentences: a random start would send large, meaningless gradients into the pretrained student
        in the first steps."""
        s, t = student_emb.double(), teacher_emb.double()
        if s.shape[1] == t.shape[1]:
            return
        w = torch.linalg.solve(s.T @ s + ridge * len(s) * torch.eye(s.shape[1], dtype=s.dtype), s.T @ t)
        self.projection = torch.nn.Linear(s.shape[1], t.shape[1], bias=False)
        with torch.no_grad():
            self.projection.weight.copy_(w.T.float())

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.projection.parameters()) if self.projection is not None else []

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        return embedding if self.projection is None else self.projection(embedding)

    def teacher_hidden_indices(self) -> list[int]:
        """hidden_states indices the teacher cache must hold (block i -> index i + 1)."""
        return sorted({t + 1 for t in self.layer_map.values()}) if self.needs_hidden else []

    def loss(self, student, feats: dict, teacher: Outputs) -> tuple[torch.Tensor, dict[str, float]]:
        out = student(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"],
                      token_type_ids=feats.get("token_type_ids"), output_hidden_states=self.needs_hidden)
        mask = feats["attention_mask"]
        own = pool(out.last_hidden_state, mask, self.pooling, self.normalize)
        s = Outputs(embedding=self.project(own), own_embedding=own, mask=mask)
        if self.needs_hidden:
            s.hidden = {i: out.hidden_states[i + 1] for i in self.layer_map}
        total = 0.0
        parts = {}
        for name, w in self.weights.items():
            value = self.entries[name].fn(s, teacher).float()
            parts[name] = float(value.detach())
            total = total + w * value
        return total, parts


# Strategies in their own modules register themselves on import.
from . import strategy_cls, strategy_self, strategy_stagewise  # noqa: E402, F401, I001
from . import strategy_augment, strategy_ensemble, strategy_exits  # noqa: E402, F401
