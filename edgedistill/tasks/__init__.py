"""Tasks: what a model computes, and what each stage does with it.

The start of the task registry (issue 13): ``embedding`` (sentence encoders) and ``classification``
(``...ForSequenceClassification`` students). :func:`recipe_task` is how a stage asks which one a
recipe produces; :func:`check_folder` keeps a model folder from going through the other task's
exporter (a classifier through the embedding path would silently lose its head).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

EMBEDDING, CLASSIFICATION = "embedding", "classification"
BUNDLE_TASKS = {EMBEDDING: "sentence-embedding", CLASSIFICATION: "classification"}
"""The manifest's ``task`` per recipe task."""


def recipe_task(recipe) -> str:
    """``embedding`` or ``classification``: what the recipe's [distill] strategy produces."""
    from ..distill.strategies import get_strategy

    return getattr(get_strategy(recipe.distill.strategy), "task", EMBEDDING)


def folder_task(folder: Path) -> str:
    from ..models.classifier import is_classifier_folder

    return CLASSIFICATION if is_classifier_folder(Path(folder)) else EMBEDDING


def check_folder(folder: Path, task: str, recipe, what: str = "student") -> None:
    """One line, before any export work, when a model folder is not of the recipe's task."""
    found = folder_task(folder)
    if found == task:
        return
    where = recipe.source_path or recipe.name
    if found == CLASSIFICATION:
        raise ModelError(f"{folder}: the {what} is a sequence classifier (config.json architectures "
                         f"...ForSequenceClassification) but {where} [distill] strategy "
                         f"{recipe.distill.strategy!r} is a sentence-embedding recipe; exporting it as an encoder "
                         "would drop its classification head: use a classification recipe (strategy = "
                         "\"classification\" or another classification strategy)")
    raise ModelError(f"{folder}: the {what} is an encoder without a classification head but {where} [distill] "
                     f"strategy {recipe.distill.strategy!r} is a classification recipe; export it with a "
                     "sentence-embedding recipe, or distil a classifier first")
