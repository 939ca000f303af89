"""The training loop for classification distillation.

The shared loop (:func:`.loop.train_loop`) with the strategy building the teacher's side
of each batch, loss weights that may move over training (``final_weights``), and the
best validation accuracy picking the kept weights. A non-finite loss stops the run with
the step and the loss terms; the error carries the last good state so the stage can keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .device import model_device, to_device
from .loop import Metric, NonFiniteLoss, train_loop
from .trainer import _batches, _features

__all__ = ["ClsResult", "NonFiniteLoss", "accuracy", "logits_of", "train_classifier"]


@dataclass
class ClsResult:
    best_state: dict
    best_step: int
    best_val_accuracy: float
    steps: int
    seconds: float
    sentences_per_second: float
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


def logits_of(model, enc: dict, pad_id: int, batch_size: int = 128) -> np.ndarray:
    """Logits for pre-tokenised rows, in their order (batched by length)."""
    was = model.training
    model.eval()
    lengths = np.array([len(x) for x in enc["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    out = None
    dev = model_device(model)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            z = model(**to_device(_features(enc, idx, pad_id), dev)).logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(order), z.shape[1]), dtype=np.float32)
            out[idx] = z
    model.train(was)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(model, enc: dict, labels: np.ndarray, pad_id: int) -> float:
    return float((logits_of(model, enc, pad_id).argmax(1) == labels).mean()) if len(labels) else 0.0


def train_classifier(student, strategy, enc: dict, labels: np.ndarray, cache, enc_val: dict, val_labels: np.ndarray,
                     spec, pad_id: int, desc: str = "distilling", store=None, log_path=None,
                     log_tags: dict | None = None, batches=None) -> ClsResult:
    """``batches``: optional ``rng -> iterator of row indices`` replacing the shuffled length-bucketed
    batches (the curriculum's growing easy pool). The strategy's ``before_step`` / ``after_step`` hooks run
    around every step (stage-wise freezing, EMA update; see :class:`.protocol.StrategyBase`)."""
    lengths = np.array([len(x) for x in enc["input_ids"]])
    y = torch.as_tensor(labels, dtype=torch.long)

    def batch_loss(idx, frac):
        strategy.before_step(student, frac)
        feats = _features(enc, idx, pad_id)
        teacher = strategy.teacher_batch(cache, idx, feats["input_ids"].shape[1], feats["attention_mask"])
        dev = model_device(student)  # the loop put the student on the run's device
        return strategy.loss(student, to_device(feats, dev), to_device(teacher, dev), y[idx].to(dev), frac)

    metric = Metric("val_accuracy", lambda: accuracy(student, enc_val, val_labels, pad_id))
    stream = batches if batches is not None else (lambda rng: _batches(lengths, spec.batch_size, rng))
    res = train_loop(student, strategy.extra_parameters(), spec, stream, batch_loss, metric,
                     after_step=strategy.after_step, strategy_state=strategy,
                     desc=desc, store=store, log_path=log_path, log_tags=log_tags)
    return ClsResult(best_state=res.best_state, best_step=res.best_step, best_val_accuracy=res.best_value,
                     steps=res.steps, seconds=res.seconds, sentences_per_second=res.sentences_per_second,
                     history=res.history, evals=res.evals)
