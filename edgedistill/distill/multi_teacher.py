"""Multi-teacher KD: the [teacher] plus the classifiers named in ``[distill] teachers``.

Each teacher's logits (and token states, for feature losses) go through the ordinary teacher
caches, keyed by that teacher's own weights, so adding or swapping one teacher recomputes only
its outputs. The combination itself is :func:`.strategy_ensemble.combine_logits`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..models.classifier import load_classifier
from ..models.teacher import resolve_model
from .strategy_ensemble import check_widths, combine_logits, mean_hidden
from .teacher_cache import TeacherTargets, teacher_logits, teacher_targets

KEY = "[distill] teachers"


@dataclass
class Teacher:
    name: str
    model: object
    tokenizer: object
    ref: object


def load_teachers(run, paths: list[str]) -> list[Teacher]:
    """The [teacher] first, then each extra classifier (loaded once per run)."""
    loaded = run.extra_teachers
    out = [Teacher(str(run.ws.teacher_ref.folder), run.teacher, run.teacher_tokenizer, run.ws.teacher_ref)]
    for p in paths:
        if p not in loaded:
            ref = resolve_model(p, run.ws.recipe, KEY)
            model, tok = load_classifier(ref.folder)
            if model.config.num_labels != run.teacher.config.num_labels:
                raise RecipeError(f"{KEY}: {p!r} has {model.config.num_labels} classes, the [teacher] "
                                  f"{run.teacher.config.num_labels}; every teacher must predict the same classes")
            loaded[p] = Teacher(p, model, tok, ref)
        out.append(loaded[p])
    return out


def ensemble_logits(run, spec, texts, desc: str) -> np.ndarray:
    max_length = run.ws.recipe.teacher.max_length
    logits = [np.asarray(teacher_logits(t.model, t.tokenizer, t.ref, texts, max_length, desc=f"{desc} {t.name}",
                                          rt=run.rt))
              for t in load_teachers(run, spec.options.teachers)]
    return combine_logits(logits, spec.options.ensemble, spec.options.ensemble_confidence)


def ensemble_cache(run, strategy, spec, cache):
    """``cache`` (the [teacher]'s) with logits and token states replaced by the teachers' combination."""
    if strategy.needs_qkv:
        raise RecipeError(f"{KEY}: attention transfer (attention_kl, value_relation) recomputes one teacher's "
                          "attention; drop those losses or the extra teachers")
    if cache.logits is not None:
        cache.logits = ensemble_logits(run, spec, run.train_texts, "teacher logits (train)")
    if cache.targets is not None:
        teachers = load_teachers(run, spec.options.teachers)
        check_widths([t.name for t in teachers], [t.model.config.hidden_size for t in teachers])
        layers = sorted(cache.targets.hidden)
        for t in teachers[1:]:
            if max(layers) > t.model.config.num_hidden_layers:
                raise RecipeError(f"{KEY}: {t.name!r} has {t.model.config.num_hidden_layers} blocks but the layer "
                                  f"map reaches teacher block {max(layers) - 1}; fix [distill] layer_map")
        targets = [cache.targets] + [
            teacher_targets(t.model.base_model, t.tokenizer, t.ref, run.train_texts, run.ws.recipe.teacher.max_length,
                            "cls", False, layers=layers, desc=f"teacher token states {t.name}") for t in teachers[1:]]
        first = cache.targets
        cache.targets = TeacherTargets(embeddings=first.embeddings, offsets=first.offsets,
                                       hidden=mean_hidden(targets), folder=first.folder)
    return cache


def ensemble_test_accuracy(run, spec) -> dict:
    """Each teacher's and the combination's test accuracy (for distill.json)."""
    max_length, o = run.ws.recipe.teacher.max_length, spec.options
    teachers = load_teachers(run, o.teachers)
    logits = [np.asarray(teacher_logits(t.model, t.tokenizer, t.ref, run.test_texts, max_length,
                                        desc=f"teacher logits (test) {t.name}", rt=run.rt)) for t in teachers]
    acc = lambda z: float((z.argmax(1) == run.test_labels).mean())  # noqa: E731
    return {"teachers": {t.name: acc(z) for t, z in zip(teachers, logits, strict=True)},
            "ensemble": o.ensemble, "ensemble_test_accuracy": acc(combine_logits(logits, o.ensemble,
                                                                                 o.ensemble_confidence))}
