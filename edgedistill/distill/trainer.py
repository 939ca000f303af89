"""The embedding distillation loop's parts: length-bucketed batches, AdamW with warm-up and
linear decay, the loss-window logger and the validation cosine; the loop itself (evaluation,
best weights, checkpoints, NaN stop) is :func:`.loop.train_loop`, shared with classification."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .device import model_device, to_device
from .losses import Outputs
from .teacher_cache import TeacherTargets


@dataclass
class TrainResult:
    best_state: dict
    best_step: int
    best_val_cosine: float
    steps: int
    seconds: float
    """Wall time of the loop, evaluations included."""
    sentences_per_second: float
    """Training throughput, evaluations excluded."""
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Endless stream of index batches; similar lengths share a batch to cut padding."""
    chunk = batch_size * 50
    while True:
        perm = rng.permutation(len(lengths))
        batches = []
        for start in range(0, len(perm), chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
        for j in rng.permutation(len(batches)):
            yield batches[j]


def _pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _teacher_batch(targets: TeacherTargets, idx, width: int, layer_map: dict[int, int], mask) -> Outputs:
    emb = torch.from_numpy(np.ascontiguousarray(targets.embeddings[idx]))
    hidden = {}
    for s_layer, t_layer in layer_map.items():
        arr = np.zeros((len(idx), width, targets.embeddings.shape[1]), dtype=np.float32)
        for row, i in enumerate(idx):
            h = targets.hidden_for(i, t_layer + 1)
            arr[row, : len(h)] = h
        hidden[s_layer] = torch.from_numpy(arr)
    return Outputs(embedding=emb, hidden=hidden, mask=mask)


def _features(enc: dict[str, list], idx, pad_id: int) -> dict:
    feats = {"input_ids": _pad([enc["input_ids"][i] for i in idx], pad_id),
             "attention_mask": _pad([enc["attention_mask"][i] for i in idx], 0)}
    if "token_type_ids" in enc:
        feats["token_type_ids"] = _pad([enc["token_type_ids"][i] for i in idx], 0)
    return feats


def optimizer(student, extra_params: list, spec):
    """(trainable params, AdamW without decay on biases/norms, warm-up then linear decay) for a student."""
    if spec.freeze_word_embeddings:
        # The word table is most of the parameters but gets sparse, noisy
        # gradients here; freezing it halves step time and keeps the teacher's lexicon.
        student.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad] + list(extra_params)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=spec.learning_rate)
    warm = max(1, int(spec.warmup_ratio * spec.max_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (spec.max_steps - s) / max(1, spec.max_steps - warm))))
    return params, opt, sched


def log_step(history: list, window: dict, values: dict, step: int, max_steps: int, sched, bar) -> dict:
    """Accumulate this step's loss terms; every 25 steps append their means to ``history``.
    Returns the window to keep accumulating into."""
    for k, v in values.items():
        window.setdefault(k, []).append(v)
    if step % 25 == 0 or step == max_steps:
        entry = {"step": step, "lr": sched.get_last_lr()[0], **{k: float(np.mean(v)) for k, v in window.items()}}
        history.append(entry)
        bar.set_postfix(loss=f"{entry['loss']:.4f}")
        return {}
    return window


def evaluate_cosine(student, enc_val, val_targets: np.ndarray, pooling: str, normalize: bool, pad_id: int,
                    batch_size: int = 128, project=None) -> float:
    """Mean cosine between student and teacher embeddings on the validation texts."""
    from ..models.encode import pool

    was_training = student.training
    student.eval()
    lengths = np.array([len(x) for x in enc_val["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    sims = np.empty(len(lengths), dtype=np.float64)
    dev = model_device(student)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            feats = to_device(_features(enc_val, idx, pad_id), dev)
            emb = pool(student(**feats).last_hidden_state, feats["attention_mask"], pooling, normalize)
            if project is not None:
                emb = project(emb)
            t = torch.from_numpy(np.ascontiguousarray(val_targets[idx]))
            sims[idx] = torch.nn.functional.cosine_similarity(emb.float().cpu(), t, dim=-1).numpy()
    student.train(was_training)
    return float(sims.mean())


def train(student, tokenizer, strategy, train_texts, targets: TeacherTargets, val_texts, val_targets: np.ndarray,
          spec, max_length: int, pooling: str, normalize: bool, store=None, log_path=None) -> TrainResult:
    from .loop import Metric, train_loop

    pad_id = tokenizer.pad_token_id or 0
    enc = tokenizer(list(train_texts), truncation=True, max_length=max_length)
    enc_val = tokenizer(list(val_texts), truncation=True, max_length=max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]])

    def batch_loss(idx, frac):
        feats = _features(enc, idx, pad_id)
        teacher_out = _teacher_batch(targets, idx, feats["input_ids"].shape[1], strategy.layer_map
                                     if strategy.needs_hidden else {}, feats["attention_mask"])
        dev = model_device(student)  # the loop put the student on the run's device
        return strategy.loss(student, to_device(feats, dev), to_device(teacher_out, dev))

    metric = Metric("val_cosine", lambda: evaluate_cosine(student, enc_val, val_targets, pooling, normalize, pad_id,
                                                          project=strategy.project))
    res = train_loop(student, strategy.extra_parameters(), spec, lambda rng: _batches(lengths, spec.batch_size, rng),
                     batch_loss, metric, store=store, log_path=log_path)
    return TrainResult(best_state=res.best_state, best_step=res.best_step, best_val_cosine=res.best_value,
                       steps=res.steps, seconds=res.seconds, sentences_per_second=res.sentences_per_second,
                       history=res.history, evals=res.evals)
