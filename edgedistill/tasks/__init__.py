"""Tasks: what a model computes, and what each stage does with it.

Every task is one record in :data:`TASKS`, declared in its own module (``embedding``,
``classification``, ``causal_lm``): its recipe sections and typed options, its strategies, what
export produces, its parity and bench quality metrics, its runtime API, its report rows, and the
hooks each stage calls. A stage asks :func:`task_of` once and calls the record's hooks; it never
branches on a task's name. :func:`check_folder` keeps a model folder from going through the other
task's exporter (a classifier through the embedding path would silently lose its head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import ModelError
from ..registry import Registry

EMBEDDING, CLASSIFICATION, CAUSAL_LM = "embedding", "classification", "causal-lm"


class Exporter(Protocol):
    """What the export stage needs from a task, built once per export of one student."""

    tok: Any
    texts: list[str]
    """The parity sentences (also what the memory check runs)."""

    def prepare(self, onnx_schemes: list[str]) -> None:
        """Extra graphs the task ships beside the model, built once for every scheme (early-exit segments)."""

    def check(self, model_path: Path, scheme, target):
        """The parity gate of one exported file: a report with ``passed``, ``summary()``, ``to_dict()``."""

    def manifest_fields(self, scheme, model_path: Path, target, pte: bool) -> tuple[dict, dict[str, Path]]:
        """The manifest's task fields (task, outputs, labels, ...) and extra bundle files (name -> path)."""


@dataclass(frozen=True)
class Task:
    name: str
    """The recipe task (``embedding``, ``classification``, ``causal-lm``)."""
    bundle_task: str
    """The manifest's ``task`` for its bundles."""
    sections: tuple[str, ...]
    """The recipe sections it reads."""
    options_of: Callable[[], type]
    """The typed ``[distill]`` options every strategy of the task shares (each strategy may extend them);
    a function, so that naming the LLM's options does not import the LLM stack."""
    outputs: tuple[str, ...]
    """What the exported graph returns."""
    parity_metric: str
    quality_metric: str
    """The bench report's quality key (absent when the data has no labels)."""
    runtime_api: str
    report_rows: tuple[str, ...]
    """The headline keys its bench report carries."""
    export_graph: Callable[[Path, Path, Any], dict] | None = None
    """``(model_dir, dest, recipe) -> export info``: the fp32 ONNX graph of a model folder of this task."""
    graph_inputs: Callable[[Path], list[Path]] | None = None
    """Files besides the weights the exported graph depends on (early-exit heads): a change re-exports."""
    finish_graph: Callable[[Path], None] | None = None
    """Called on the fused fp32 graph before it is kept (ORT's quantiser needs unshared initialisers)."""
    et_prepare: Callable[[Path, Any], tuple] | None = None
    """``(model_dir, EtOptions) -> (module, tokenizer, input names, example args)`` for ExecuTorch."""
    distill: Callable[[Any], Path] | None = None
    """``(workspace) -> student folder`` for tasks on the encoder workspace."""
    exporter: Callable[[Any, Path], Exporter] | None = None
    bench_quality: Callable[..., dict] | None = None
    """``(workspace, student_dir, {model: (family, path)}, threads) -> quality per model``."""
    bench_extras: Callable[..., dict] | None = None
    """``(workspace, manifest, bundle, entries, threads) -> extra report sections``."""
    pipeline: Callable[[Path, Path | None], dict] | None = None
    """Tasks with their own recipe kind (``kind = "llm"``): the whole run from a recipe file."""
    is_recipe: Callable[[Path], bool] | None = None
    """Whether a recipe file is of this task's own kind (see ``pipeline``)."""
    methods_of: Callable[[], list[str]] | None = None
    """Tasks with their own recipe kind: the training methods their [distill] offers (LLM ``mode``)."""

    @property
    def options(self) -> type:
        return self.options_of()

    @property
    def strategies(self) -> list[str]:
        """The registered ``[distill] strategy`` names that train for this task (or its own recipe's methods)."""
        if self.methods_of is not None:
            return self.methods_of()
        from ..distill.strategies import STRATEGIES

        return sorted(n for n, cls in STRATEGIES.items() if cls.task == self.name)


TASKS: Registry[Task] = Registry("task", "task")


def register_task(task: Task) -> Task:
    return TASKS.add(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.lookup(name)


def recipe_task(recipe) -> str:
    """``embedding`` or ``classification``: what the recipe's [distill] strategy produces."""
    from ..distill.strategies import get_strategy

    return get_strategy(recipe.distill.strategy).task


def task_of(recipe) -> Task:
    return get_task(recipe_task(recipe))


def file_task(path: str | Path) -> Task | None:
    """The task of a recipe file of its own kind (an LLM recipe), or None for an encoder recipe."""
    path = Path(path)
    if not path.is_file():
        return None
    return next((t for t in TASKS.values() if t.is_recipe is not None and t.is_recipe(path)), None)


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


BUNDLE_TASKS = {EMBEDDING: "sentence-embedding", CLASSIFICATION: "classification"}
"""The manifest's ``task`` per recipe task (kept for callers that only need the name)."""

# Each task module registers its record on import.
from . import causal_lm, classification, embedding  # noqa: E402, F401, I001
