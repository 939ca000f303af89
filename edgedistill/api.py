"""Python API; each function is one CLI command (see ``edgedistill --help``)."""

from __future__ import annotations

from pathlib import Path

from .recipe import Recipe
from .recipe import load_recipe as _load_recipe


def default_recipe_path() -> Path:
    """The demo recipe (examples/quickstart.toml), wherever edgedistill is installed."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_builtin" / "examples" / "quickstart.toml", here.parent / "examples" / "quickstart.toml"):
        if cand.is_file():
            return cand
    from .errors import RecipeError

    raise RecipeError("the built-in quickstart recipe is missing (broken installation?)")


def load_recipe(path: str | Path | None = None) -> Recipe:
    return _load_recipe(path or default_recipe_path())


def _workspace(recipe, out):
    from .workspace import Workspace

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    return Workspace(recipe, Path(out) if out else Path("runs") / recipe.name)


def distill(recipe: Recipe | str | Path | None = None, out: str | Path | None = None) -> Path:
    """Distil the recipe's teacher into a student; returns the student folder."""
    from .distill.stage import run_distill

    return run_distill(_workspace(recipe, out))


def _embedding_only(ws, command: str):
    """Export and bench handle sentence-embedding students; a classifier student stops here, clearly."""
    from .distill.strategies import get_strategy
    from .errors import RecipeError

    name = ws.recipe.distill.strategy
    if getattr(get_strategy(name), "task", "embedding") != "embedding":
        raise RecipeError(f"{ws.recipe.source_path or ws.recipe.name}: [distill] strategy {name!r} makes a "
                          f"classifier student; 'edgedistill {command}' supports sentence-embedding students only "
                          "so far (run 'edgedistill distill' for classifiers)")
    return ws


def teacher_classifier(recipe: Recipe | str | Path | None = None, out: str | Path = "runs/sentiment-teacher",
                       unfreeze_layers: int = 0, epochs: int = 4, seed: int = 0, learning_rate: float = 0.0) -> dict:
    """Turn the recipe's encoder into a sentiment classifier teacher on its labelled data; returns its record."""
    from .models.classifier import ClassifierTrainSpec, train_classifier_teacher

    ws = _workspace(recipe, None)
    spec = ClassifierTrainSpec(unfreeze_layers=unfreeze_layers, epochs=epochs, seed=seed, learning_rate=learning_rate)
    return train_classifier_teacher(ws, Path(out), spec)


def export(recipe: Recipe | str | Path | None = None, out: str | Path | None = None, targets: list[str] | None = None,
           quant: str | None = None, student: str | Path | None = None, zip_bundle: bool = False) -> list[Path]:
    """Export the student for each target behind the parity gate; returns the bundle folders
    (and writes ``bundles/TARGET.zip`` beside each when ``zip_bundle``)."""
    from .export.stage import run_export

    return run_export(_embedding_only(_workspace(recipe, out), "export"), targets=targets, quant=quant,
                      student_dir=Path(student) if student else None, zip_bundle=zip_bundle)


def verify_bundle(path: str | Path) -> dict:
    """Check a bundle folder or zip (sha256 of every file) and, for onnxruntime bundles, open it as an
    app would; returns its manifest."""
    from .runtime import Bundle, verify_bundle

    manifest = verify_bundle(path)
    if manifest.get("backend", "onnxruntime") == "onnxruntime":
        Bundle.open(path, threads=1)
    return manifest


def predict(bundle: str | Path, texts: list[str], threads: int | None = None, truncate: bool = True) -> list[dict]:
    """Run a bundle with the torch-free runtime: per text ``{"embedding"}`` or ``{"label", "score", "scores"}``."""
    from .runtime import Bundle

    return Bundle.open(bundle, threads=threads).predict(texts, truncate=truncate)


def bench(recipe: Recipe | str | Path | None = None, out: str | Path | None = None, target: str | None = None,
          models: list[str | Path] | None = None, teacher: str | Path | None = None,
          targets: list[str] | None = None, tokenizer: str | Path | None = None) -> dict:
    """Benchmark teacher against student; returns the report (also written to OUT/report/).

    With ``models`` (paths of HF folders, .onnx/.pte files or bundles), benchmark those instead of a
    run folder, against ``teacher`` if given, modelling ``targets`` (default: all); OUT defaults to
    runs/bench.
    """
    if models:
        from .bench.adhoc import run_bench_models

        r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        return run_bench_models(r, models, Path(out) if out else Path("runs") / "bench", teacher=teacher,
                                targets=targets or None, tokenizer=tokenizer)
    from .bench.stage import run_bench

    return run_bench(_embedding_only(_workspace(recipe, out), "bench"), target=target)


def llm_distill(recipe: str | Path, out: str | Path | None = None) -> Path:
    """Distil a causal-LM teacher per an LLM recipe (``kind = "llm"``); returns the student folder."""
    from .llm.recipe import load_llm_recipe
    from .llm.stage import run_llm_distill

    r = load_llm_recipe(recipe)
    return run_llm_distill(r, Path(out) if out else Path("runs") / r.name)


def report(runs: list[str | Path], out: str | Path = "runs/comparison") -> dict[str, Path]:
    """Merge the bench reports of several run folders into comparison.html and comparison.md."""
    from .bench.compare import compare

    return compare(runs, out)


def run(recipe: Recipe | str | Path | None = None, out: str | Path | None = None) -> dict:
    """distill -> export -> bench, sharing one workspace (data and teacher are loaded once)."""
    from .bench.stage import run_bench
    from .distill.stage import run_distill
    from .export.stage import run_export

    ws = _embedding_only(_workspace(recipe, out), "run")
    run_distill(ws)
    run_export(ws)
    return run_bench(ws)
