"""The Strategy protocol: everything a training loop or a stage may ask of a KD strategy.

A strategy turns one batch into a loss (``loss``) and says which teacher states it needs
(``teacher_hidden_indices``); that is the required part. Everything else is an optional hook
with a no-op default in :class:`StrategyBase`, so the stages call hooks directly instead of
probing with ``hasattr``: a strategy overrides only what it uses. Options a strategy reads from
``[distill]`` are a typed dataclass named by its ``Options`` attribute (see
:mod:`.options`); the recipe parser builds and validates it from the recipe's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from .options import NoOptions


@runtime_checkable
class Strategy(Protocol):
    """What every registered strategy provides (see :class:`StrategyBase` for the optional hooks)."""

    task: ClassVar[str]
    """The task it trains for: ``embedding`` or ``classification`` (see :mod:`edgedistill.tasks`)."""
    Options: ClassVar[type]
    """Dataclass of the strategy's own ``[distill]`` keys (``NoOptions`` when it has none)."""
    weights: dict[str, float]

    def teacher_hidden_indices(self) -> list[int]:
        """``hidden_states`` indices the teacher cache must hold (block i -> i + 1)."""

    def loss(self, student, feats: dict, teacher, *args, **kwargs) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted training loss of one batch and its named parts (for the log)."""


class Checkpointed(Protocol):
    """State a training loop saves in its checkpoints beside the weights (a strategy, the LLM's counters)."""

    def checkpoint_state(self) -> dict[str, torch.Tensor]: ...

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None: ...


class StrategyBase:
    """The optional hooks with the defaults a strategy that needs none of them gets."""

    task: ClassVar[str] = "embedding"
    Options: ClassVar[type] = NoOptions
    teacher_free: ClassVar[bool] = False
    """True when the targets come from students (EMA, peers, the student's own clean input): the
    teacher's outputs are then never computed."""
    token_level: ClassVar[bool] = False
    """True when the strategy itself (not only its losses) needs token-aligned teacher states."""
    needs_logits: bool = False
    needs_hidden: bool = False
    needs_qkv: bool = False
    projection: torch.nn.Module | None = None
    """A training-only map into the teacher's embedding space (students narrower or wider than it)."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters the strategy owns (projections), optimised with the student's."""
        return []

    def bind_tokenizer(self, tokenizer) -> None:
        """Called once with the student's tokenizer before training (augmentation edits token ids)."""

    def prepare_student(self, student):
        """The module that trains: the student itself, or the student wrapped (peers, exit heads)."""
        return student

    def before_step(self, student, frac: float) -> None:
        """Before each step, ``frac`` (0..1) of the way through training (stage-wise freezing)."""

    def after_step(self, student) -> None:
        """After each optimizer step (EMA update)."""

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Tensors a resumable checkpoint must carry besides the student (EMA weights)."""
        return {}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`checkpoint_state` saved."""

    def calibrate_extras(self, model, enc: dict, labels, pad_id: int) -> None:
        """After training, fit what the strategy adds on validation data (early exits' temperatures)."""

    def evaluate_extras(self, model, enc: dict, labels, pad_id: int) -> dict[str, Any] | None:
        """Test figures of what the strategy adds to the student (early exits), or None."""
        return None

    def save_extras(self, folder: Path, evaluated: dict[str, Any] | None) -> None:
        """Write what the strategy adds to the student folder (early exits' weights)."""
