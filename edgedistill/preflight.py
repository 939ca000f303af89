"""Every reference an encoder recipe makes, checked before any data is fetched or any model trained.

Parsing (:mod:`.recipe`) checks keys, types and ranges, and resolves target files. What needs the
registries (losses, strategies, schemes) or the teacher's shape is checked here, when a stage starts,
so that a typo in a loss name or a layer the teacher lacks stops ``run`` in a second instead of after a
data download, and never overwrites an earlier student. Every message names the recipe file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from .errors import RecipeError


@contextlib.contextmanager
def in_recipe(recipe) -> Iterator[None]:
    """Prefix a stage's ``[section] key ...`` errors with the recipe file, so they name file, key and value."""
    try:
        yield
    except RecipeError as e:
        msg = str(e)
        if recipe.source_path is not None and msg.startswith("["):
            raise RecipeError(f"{recipe.source_path}: {msg}") from None
        raise


def preflight(recipe) -> None:
    with in_recipe(recipe):
        _check_registries(recipe)
        _check_teacher_shape(recipe)


def _check_registries(recipe) -> None:
    from .distill.losses import LOSSES
    from .distill.strategies import get_strategy

    get_strategy(recipe.distill.strategy)
    for name in recipe.distill.losses:  # final_weights must name these (checked when parsed)
        LOSSES.lookup(name)
    if recipe.export.quantization != "auto":
        from .export.schemes import get_task_scheme

        get_task_scheme(recipe.export.quantization, "encoder", "[export] quantization")


def _teacher_config(recipe) -> dict | None:
    """The teacher's config.json when it is a local folder (a packaged teacher is checked once fetched)."""
    if not recipe.teacher.path:
        return None
    path = recipe.resolve(recipe.teacher.path) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or broken: loading the teacher gives the precise error
    return cfg if isinstance(cfg, dict) else None


def _check_teacher_shape(recipe) -> None:
    cfg = _teacher_config(recipe)
    if cfg is None or recipe.student.base:
        return
    n, width = cfg.get("num_hidden_layers"), cfg.get("intermediate_size")
    if not isinstance(n, int) or n < 1 or not isinstance(width, int):
        return
    from .models.student import plan_student
    from .distill.strategies import resolve_layer_map

    class _Shape:  # what plan_student reads off a transformers config
        num_hidden_layers = n
        intermediate_size = width

    plan = plan_student(recipe.student, _Shape)
    resolve_layer_map(recipe.distill.layer_map, plan.layers, n, recipe.distill.layer_map_mode)
