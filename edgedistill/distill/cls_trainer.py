"""The training loop for classification distillation.

Same schedule as the embedding loop (length-bucketed batches, AdamW with warm-up
and linear decay, clipped gradients), but the strategy builds the teacher's side
of each batch, the loss weights may move over training (``final_weights``), and
the checkpoint kept is the one with the best validation accuracy. A non-finite
loss stops the run with the step and the loss terms; the error carries the last
good state so the stage can keep it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import TrainingError
from ..progress import progress
from .trainer import _batches, _features, log_step, optimizer


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


class NonFiniteLoss(TrainingError):
    """A NaN/inf loss; ``best_state``/``best_step`` hold the last good checkpoint."""

    def __init__(self, msg: str, best_state: dict, best_step: int):
        super().__init__(msg)
        self.best_state = best_state
        self.best_step = best_step


def logits_of(model, enc: dict, pad_id: int, batch_size: int = 128) -> np.ndarray:
    """Logits for pre-tokenised rows, in their order (batched by length)."""
    was = model.training
    model.eval()
    lengths = np.array([len(x) for x in enc["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    out = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            z = model(**_features(enc, idx, pad_id)).logits.float().numpy()
            if out is None:
                out = np.zeros((len(order), z.shape[1]), dtype=np.float32)
            out[idx] = z
    model.train(was)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(model, enc: dict, labels: np.ndarray, pad_id: int) -> float:
    return float((logits_of(model, enc, pad_id).argmax(1) == labels).mean()) if len(labels) else 0.0


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_classifier(student, strategy, enc: dict, labels: np.ndarray, cache, enc_val: dict, val_labels: np.ndarray,
                     spec, pad_id: int, desc: str = "distilling", batches=None) -> ClsResult:
    """``batches``: optional ``rng -> iterator of row indices`` replacing the shuffled length-bucketed
    batches (the curriculum's growing easy pool). A strategy may define ``before_step(student, frac)``
    (stage-wise freezing) and ``after_step(student)`` (EMA update)."""
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    y = torch.as_tensor(labels, dtype=torch.long)
    params, opt, sched = optimizer(student, strategy.parameters(), spec)

    best_val = accuracy(student, enc_val, val_labels, pad_id)
    result = ClsResult(best_state=_snapshot(student), best_step=0, best_val_accuracy=best_val, steps=0, seconds=0.0,
                       sentences_per_second=0.0, evals=[{"step": 0, "val_accuracy": best_val}])
    student.train()
    seen, eval_seconds = 0, 0.0
    window: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    stream = batches(rng) if batches is not None else _batches(lengths, spec.batch_size, rng)
    bar = progress(range(1, spec.max_steps + 1), desc=desc, unit="step")
    after_step = getattr(strategy, "after_step", None)
    before_step = getattr(strategy, "before_step", None)
    for step in bar:
        idx = next(stream)
        feats = _features(enc, idx, pad_id)
        teacher = strategy.teacher_batch(cache, idx, feats["input_ids"].shape[1], feats["attention_mask"])
        frac = (step - 1) / max(1, spec.max_steps - 1)
        if before_step is not None:
            before_step(student, frac)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.precision == "bf16"):
            loss, parts = strategy.loss(student, feats, teacher, y[idx], frac)
        value = float(loss.detach())
        if not math.isfinite(value):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
            raise NonFiniteLoss(f"distillation stopped: loss is {value} at step {step} ({shown}); lower [distill] "
                                f"learning_rate (now {spec.learning_rate:g}) or check the data",
                                result.best_state, result.best_step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(student)
        seen += len(idx)
        window = log_step(result.history, window, {"loss": value, **parts}, step, spec.max_steps, sched, bar)
        if step % spec.eval_every == 0 or step == spec.max_steps:
            t_eval = time.perf_counter()
            val = accuracy(student, enc_val, val_labels, pad_id)
            eval_seconds += time.perf_counter() - t_eval
            result.evals.append({"step": step, "val_accuracy": val})
            if val > result.best_val_accuracy:
                result.best_val_accuracy, result.best_step = val, step
                result.best_state = _snapshot(student)
    result.steps = spec.max_steps
    result.seconds = time.perf_counter() - t0
    result.sentences_per_second = seen / max(result.seconds - eval_seconds, 1e-9)
    student.load_state_dict(result.best_state)
    student.eval()
    return result
