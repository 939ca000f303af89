"""Layer-wise self-distillation with early exits (``strategy = "self_layerwise"``).

Every student block but the last gets an exit: a classifier on its [CLS] state, shaped like the
final BERT head (dense + tanh pooler, then a linear layer) and initialised from it. The final
head trains with the recipe's losses (with ``kd`` the teacher's cached logits teach it; with only
``hard_ce`` the run is teacher-free); each exit trains with hard CE and with KD from the final
head's detached logits (Be Your Own Teacher, Zhang et al. 2019), scaled by ``exit_weight``.

After training each exit is calibrated on the validation split: one temperature per exit, fitted so
that its softmax predicts whether the final head gives the same answer (temperature scaling, Guo et
al. 2017, with the final head's answer as the target), then folded into the exit's last layer. An
exit's top probability then reads as "how likely the full model agrees", the quantity an
``exit_threshold`` is meant to bound; without it shallow exits on a hard task (15 Brown genres) were
under-confident where they agreed and the threshold that kept accuracy stopped few texts early.

The exits are saved next to the student (``early_exits.safetensors`` + ``early_exits.json`` with
each exit's test accuracy and temperature), so the student itself stays a plain
``...ForSequenceClassification`` and a device can stop at the first exit that is confident enough.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError, RecipeError
from ..schema import fail_key as _fail
from .losses import Outputs, get_loss
from .strategies import register_strategy
from .strategy_cls import ClassificationOptions, ClassificationStrategy, check_needs
from .strategy_self import _Fixed
from .trainer import _features

WEIGHTS, META = "early_exits.safetensors", "early_exits.json"


class ExitHeads(torch.nn.Module):
    """One pooler + classifier per exit layer, reading that block's [CLS] state."""

    def __init__(self, layers: list[int], hidden: int, num_labels: int):
        super().__init__()
        self.layers = list(layers)
        self.heads = torch.nn.ModuleDict({
            str(i): torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                        torch.nn.Linear(hidden, num_labels)) for i in self.layers})

    @classmethod
    def like(cls, student, layers: list[int]) -> ExitHeads:
        """Exits initialised from the student's own final head, where it has that shape."""
        cfg = student.config
        exits = cls(layers, cfg.hidden_size, cfg.num_labels)
        pooler = getattr(student.base_model, "pooler", None)
        dense = getattr(pooler, "dense", None)
        head = getattr(student, "classifier", None)
        with torch.no_grad():
            for h in exits.heads.values():
                if isinstance(dense, torch.nn.Linear) and dense.weight.shape == h[0].weight.shape:
                    h[0].load_state_dict(dense.state_dict())
                if isinstance(head, torch.nn.Linear) and head.weight.shape == h[2].weight.shape:
                    h[2].load_state_dict(head.state_dict())
        return exits

    def forward(self, hidden_states) -> dict[int, torch.Tensor]:
        """Logits per exit layer from ``output_hidden_states`` (index i + 1 = block i)."""
        return {i: self.heads[str(i)](hidden_states[i + 1][:, 0]) for i in self.layers}


class ExitModel(torch.nn.Module):
    """The student plus its exits, trained as one module; calling it runs the student alone."""

    def __init__(self, student, exits: ExitHeads):
        super().__init__()
        self.student = student
        self.exits = exits

    def forward(self, **kw):
        return self.student(**kw)

    def get_input_embeddings(self):
        return self.student.get_input_embeddings()


@dataclass
class ExitOptions(ClassificationOptions):
    exit_weight: float = 1.0
    """Weight of the early exits' loss (hard CE + KD from the final head)."""

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.exit_weight < 0:
            _fail(where, "exit_weight", f"expected a weight >= 0, got {self.exit_weight}")


@register_strategy("self_layerwise")
class LayerwiseSelfStrategy(ClassificationStrategy):
    """The final head (and optionally the teacher) teaches an early exit on every shallower block."""

    Options = ExitOptions

    def __init__(self, spec, layer_map, student_config, teacher_config, teacher_blocks=None):
        super().__init__(spec, layer_map, student_config, teacher_config, teacher_blocks)
        check_needs(self.entries, frozenset({"logits", "labels"}), "self_layerwise",
                    "the final head learns from logits and labels only: use kd / hard_ce / ...,")
        self.layers = list(range(student_config.num_hidden_layers - 1))
        if not self.layers:
            raise RecipeError("[distill] key 'strategy': self_layerwise needs a student with at least 2 layers "
                              "(set [student] layers or num_layers)")
        self.exit_weight = spec.options.exit_weight
        self.model: ExitModel | None = None
        self.temperatures: dict[str, float] = {}
        self._kd, self._ce = get_loss("kd").fn, get_loss("hard_ce").fn

    def prepare_student(self, student) -> ExitModel:
        self.model = ExitModel(student, ExitHeads.like(student, self.layers))
        return self.model

    def loss(self, model, feats, teacher, labels, frac=0.0):
        out = model.student(**feats, output_hidden_states=True)
        total, parts = super().loss(_Fixed(out.logits), feats, teacher, labels, frac)
        final = Outputs(logits=out.logits.detach().float())
        kd_sum, ce_sum = 0.0, 0.0
        for z in model.exits(out.hidden_states).values():
            s = Outputs(logits=z, labels=labels)
            kd_sum = kd_sum + self._kd(s, final, temperature=self.loss_params["temperature"])
            ce_sum = ce_sum + self._ce(s, final)
        n = len(self.layers)
        parts["exit_kd"], parts["exit_ce"] = float(kd_sum.detach()) / n, float(ce_sum.detach()) / n
        return total + self.exit_weight * (kd_sum + ce_sum) / n, parts

    def calibrate_extras(self, model, enc: dict, labels: np.ndarray, pad_id: int) -> None:
        """Fit each exit's temperature on validation texts (see the module doc) and fold it into the exit."""
        self.temperatures = calibrate_exits(model.student, model.exits, enc, pad_id)

    def evaluate_extras(self, model, enc: dict, labels: np.ndarray, pad_id: int) -> dict[str, float]:
        """Test accuracy of each exit (keyed by block index) and of the final head ("final")."""
        return exit_accuracies(model.student, model.exits, enc, labels, pad_id)

    def save_extras(self, folder: Path, accuracies: dict[str, float] | None) -> None:
        save_exits(self.model.exits, folder, accuracies, self.temperatures)


def exit_logits(student, exits: ExitHeads, **feats) -> dict[str, torch.Tensor]:
    """Logits of every exit and of the final head for one batch (what a device runs, cut short)."""
    out = student(**feats, output_hidden_states=True)
    return {**{str(i): z for i, z in exits(out.hidden_states).items()}, "final": out.logits}


def _all_logits(student, exits, enc: dict, n: int, pad_id: int, batch_size: int = 128) -> dict[str, torch.Tensor]:
    was = student.training
    student.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(start + batch_size, n))
            for name, z in exit_logits(student, exits, **_features(enc, idx, pad_id)).items():
                parts.setdefault(name, []).append(z.float())
    student.train(was)
    return {k: torch.cat(v) for k, v in parts.items()}


TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(20.0), 121))
"""The grid an exit's temperature is chosen from (log-spaced; a grid keeps the fit deterministic). The floor
stops an exit that agreed with the final head on every validation text (a small or easy split) from being
sharpened without limit: its probabilities would round to 1.0 and every threshold would stop there. The
Brown and VADER exits fitted 0.30-0.78, above it."""


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature T minimising the negative log-likelihood of ``target`` under softmax(logits / T)."""
    nll = [float(torch.nn.functional.cross_entropy(logits / t, target)) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def calibrate_exits(student, exits: ExitHeads, enc: dict, pad_id: int) -> dict[str, float]:
    """Each exit's temperature for agreement with the final head on ``enc``, folded into its last linear
    layer (so every runtime applies it for free); returns them by exit layer. No texts: nothing changes."""
    n = len(enc["input_ids"])
    if n == 0:
        return {}
    z = _all_logits(student, exits, enc, n, pad_id)
    target = z.pop("final").argmax(-1)
    temps = {}
    with torch.no_grad():
        for name, logits in z.items():
            t = temps[name] = fit_temperature(logits, target)
            last = exits.heads[name][2]
            last.weight.div_(t)
            last.bias.div_(t)
    return temps


def exit_accuracies(student, exits, enc: dict, labels: np.ndarray, pad_id: int, batch_size: int = 128):
    z = _all_logits(student, exits, enc, len(labels), pad_id, batch_size)
    y = torch.as_tensor(labels)
    return {k: int((v.argmax(-1) == y).sum()) / max(len(labels), 1) for k, v in z.items()}


def save_exits(exits: ExitHeads, folder: Path, accuracies: dict[str, float] | None = None,
               temperatures: dict[str, float] | None = None) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().contiguous() for k, v in exits.heads.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    first = exits.heads[str(exits.layers[0])]
    meta = {"layers": exits.layers, "hidden_size": first[0].in_features, "num_labels": first[2].out_features,
            "pooling": "cls", "head": "dense -> tanh -> linear on hidden_states[layer + 1][:, 0]",
            "test_accuracy": accuracies or {},
            "temperature": temperatures or {},
            "calibration": ("each exit's logits divided by its temperature (already folded into the weights), fitted "
                            "on validation texts to the final head's answers") if temperatures else "none"}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")


def load_exits(folder: Path) -> ExitHeads:
    """The exits saved next to a student (safetensors only; nothing is unpickled)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
        exits = ExitHeads(meta["layers"], meta["hidden_size"], meta["num_labels"])
        exits.heads.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{folder}: no readable early exits ({META} + {WEIGHTS}): {e}") from None
    return exits.eval()
