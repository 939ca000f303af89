"""Teacher-assistant chain (Mirzadeh et al. 2020): large -> medium -> small.

A student much smaller than its teacher can fail to follow it; intermediate "assistants",
each cut from the teacher (``[distill] assistants = [[teacher blocks], ...]``, largest
first), bridge the gap: assistant 1 learns from the teacher's logits, assistant k + 1 from
assistant k's, and the student from the last one. Only the logits travel along the chain,
so the recipe's losses must be logit/label losses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import RecipeError
from ..models.student import plan_student
from ..progress import say
from .cls_trainer import accuracy, logits_of, train_classifier
from .device import on_device


def train_chain(run, spec, teacher_logits: np.ndarray, desc: str = "distilling") -> tuple[np.ndarray, list[dict]]:
    """Train each assistant from the previous link's logits; returns the last link's logits and one
    record per assistant (kept layers, best validation and test accuracy, seconds)."""
    from .strategy_cls import TeacherCache, check_needs  # after .strategies (it registers the strategies)

    r = run.ws.recipe
    if spec.strategy != "classification":
        raise RecipeError(f"[distill] key 'assistants': the chain trains assistants with strategy 'classification'; "
                          f"strategy {spec.strategy!r} needs other targets: drop assistants or the strategy")
    if r.student.base:
        raise RecipeError("[distill] key 'assistants': assistants are cut from the teacher, which a student from "
                          f"[student] base = {r.student.base!r} does not share; drop one of the two")
    logits, links = teacher_logits, []
    n_teacher = run.teacher.config.num_hidden_layers
    for i, layers in enumerate(spec.options.assistants, start=1):
        bad = [t for t in layers if t >= n_teacher]
        if bad:
            raise RecipeError(f"[distill] key 'assistants[{i - 1}]': teacher layer {bad[0]} does not exist (the "
                              f"teacher has layers 0..{n_teacher - 1})")
        keep = dataclasses.replace(r.student, layers=list(layers), num_layers=None, intermediate_size=None)
        plan = plan_student(keep, run.teacher.config)
        model = run.build_student(plan)
        strategy = run.strategy(spec, layer_map={j: t for j, t in enumerate(plan.layers)}, student=model)
        check_needs(strategy.entries, frozenset({"logits", "labels"}), spec.strategy,
                    "an assistant chain passes logits only: use logit and label losses")
        res = train_classifier(model, strategy, run.enc, run.train_labels, TeacherCache(logits=logits), run.enc_val,
                               run.val_labels, spec, run.pad_id,
                               desc=f"{desc} (assistant {i}/{len(spec.options.assistants)}, {len(layers)} layers)")
        links.append({"assistant": i, "kept_teacher_layers": list(plan.layers), "best_step": res.best_step,
                      "best_val_accuracy": res.best_val_accuracy,
                      "test_accuracy": accuracy(model, run.enc_test, run.test_labels, run.pad_id),
                      "train_seconds": res.seconds})
        say(f"assistant {i} (teacher layers {list(plan.layers)}): test accuracy {links[-1]['test_accuracy']:.4f}, "
            f"best validation accuracy {res.best_val_accuracy:.4f}")
        with on_device(model, run.rt.device):  # the assistant teaches the next link: its pass runs on the device
            logits = logits_of(model, run.enc, run.pad_id, batch_size=run.rt.teacher_batch)
    return logits, links
