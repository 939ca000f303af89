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
    from .preflight import preflight
    from .workspace import Workspace

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    preflight(recipe)
    return Workspace(recipe, Path(out) if out else Path("runs") / recipe.name)


def distill(recipe: Recipe | str | Path | None = None, out: str | Path | None = None) -> Path:
    """Distil the recipe's teacher into a student; returns the student folder."""
    from .distill.stage import run_distill

    return run_distill(_workspace(recipe, out))


def teacher_classifier(recipe: Recipe | str | Path | None = None, out: str | Path = "runs/sentiment-teacher",
                       unfreeze_layers: int = 0, epochs: int = 4, seed: int = 0, learning_rate: float = 0.0) -> dict:
    """Turn the recipe's encoder into a classifier teacher on its labelled data (classes = the data's labels);
    returns its record."""
    from .models.classifier import ClassifierTrainSpec, train_classifier_teacher

    ws = _workspace(recipe, None)
    spec = ClassifierTrainSpec(unfreeze_layers=unfreeze_layers, epochs=epochs, seed=seed, learning_rate=learning_rate)
    return train_classifier_teacher(ws, Path(out), spec)


def export(recipe: Recipe | str | Path | None = None, out: str | Path | None = None, targets: list[str] | None = None,
           quant: str | None = None, student: str | Path | None = None, zip_bundle: bool = False,
           sign: str | Path | None = None) -> list[Path]:
    """Export the student for each target behind the parity gate; returns the bundle folders
    (and writes ``bundles/TARGET.zip`` beside each when ``zip_bundle``). ``sign``: an Ed25519 private key
    (PEM) that signs every bundle (``signature.json``; see :func:`sign_bundle`)."""
    from .export.stage import run_export

    if sign is not None:
        from .runtime.signing import load_key

        load_key(sign, private=True)  # a bad key fails before the export, not after it
    paths = run_export(_workspace(recipe, out), targets=targets, quant=quant,
                       student_dir=Path(student) if student else None, zip_bundle=zip_bundle)
    if sign is not None:
        for folder in paths:
            sign_bundle(folder, sign, zip_bundle=zip_bundle)
    return paths


def sign_bundle(folder: str | Path, private_key: str | Path, zip_bundle: bool = False) -> str:
    """Sign a bundle folder with an Ed25519 private key (writes ``signature.json``); returns the bundle id.
    ``zip_bundle`` rewrites ``FOLDER.zip`` so that it carries the signature too."""
    from .runtime.format import SIGNATURE
    from .runtime.signing import sign_bundle as _sign

    sig = Path(folder) / SIGNATURE
    before = sig.read_bytes() if sig.is_file() else None
    bundle_id = _sign(folder, private_key)
    if zip_bundle:
        from .export.bundle import write_zip

        try:
            write_zip(Path(folder))
        except BaseException:
            # The command failed: the folder goes back to how it was, not half signed-and-zipped.
            if before is None:
                sig.unlink(missing_ok=True)
            else:
                sig.write_bytes(before)
            raise
    return bundle_id


def keygen(private_key: str | Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair for signing bundles: ``PATH`` (private, 0600) and ``PATH.pub``."""
    from .runtime.signing import generate_keypair

    return generate_keypair(private_key)


def verify_bundle(path: str | Path, expect_id: str | None = None, public_key: str | Path | None = None) -> dict:
    """Check a bundle folder or zip (sha256 of every file, the id when ``expect_id``, the signature when
    ``public_key``) and, for onnxruntime bundles, open it as an app would; returns its manifest with the
    computed ``bundle_id``."""
    from .runtime import Bundle, verify_bundle

    manifest = verify_bundle(path, expect_id, public_key)
    if manifest.get("kind") == "causal-lm":
        from .runtime.causal_lm import CausalLM

        CausalLM.open(path, threads=1)
    elif manifest.get("backend", "onnxruntime") == "onnxruntime":
        Bundle.open(path, threads=1)
    return manifest


def predict(bundle: str | Path, texts: list[str], threads: int | None = None, truncate: bool = True,
            expect_id: str | None = None, public_key: str | Path | None = None,
            exit_threshold: float | None = None) -> list[dict]:
    """Run a bundle with the torch-free runtime: per text ``{"embedding"}`` or ``{"label", "score", "scores"}``
    (with ``exit_threshold``, a classifier with early exits answers from the first confident exit).
    ``expect_id`` / ``public_key`` refuse any bundle but the pinned / signed one."""
    from .runtime import Bundle

    return Bundle.open(bundle, threads=threads, expect_id=expect_id, public_key=public_key).predict(
        texts, truncate=truncate, exit_threshold=exit_threshold)


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

    return run_bench(_workspace(recipe, out), target=target)


def _own_kind(path: str | Path):
    """The task of a recipe file of its own kind (an LLM recipe, ``kind = "llm"``), or None."""
    from .tasks import file_task

    return file_task(path)


def llm_run(recipe: str | Path, out: str | Path | None = None) -> dict:
    """LLM recipe end to end: distill -> export ([export] schemes) -> bench -> report (OUT/report/llm_report.*)."""
    from .llm.pipeline import run_llm
    from .llm.recipe import load_llm_recipe

    r = load_llm_recipe(recipe)
    return run_llm(r, Path(out) if out else Path("runs") / r.name)


def llm_distill(recipe: str | Path, out: str | Path | None = None) -> Path:
    """Distil a causal-LM teacher per an LLM recipe (``kind = "llm"``); returns the student folder."""
    from .llm.recipe import load_llm_recipe
    from .llm.stage import run_llm_distill

    r = load_llm_recipe(recipe)
    return run_llm_distill(r, Path(out) if out else Path("runs") / r.name)


def llm_export(student: str | Path, out: str | Path, scheme: str = "et-8da4w", target: str | None = None,
               max_cache_len: int | None = None, zip_bundle: bool = False, attention: str | None = None) -> Path:
    """Export an HF causal-LM folder (e.g. OUT/student from ``llm_distill``) into a causal-LM bundle folder
    (and ``OUT.zip`` beside it when ``zip_bundle``); returns the folder. ``attention``: the ExecuTorch program's
    (``custom`` when None, ``filled``, ``static``; see :data:`edgedistill.llm.recipe.ATTENTIONS`)."""
    from .llm.bundle import export_llm_bundle

    return export_llm_bundle(student, out, scheme=scheme, target=target, max_cache_len=max_cache_len,
                             zip_bundle=zip_bundle, attention=attention)


def open_llm(bundle: str | Path, threads: int | None = None, expect_id: str | None = None,
             public_key: str | Path | None = None):
    """Verify and open a causal-LM bundle (folder or .zip); the result's ``stats`` hold the last timings.
    ONNX bundles need no torch (this is :class:`edgedistill.runtime.CausalLM`)."""
    from .runtime.causal_lm import CausalLM

    return CausalLM.open(bundle, threads=threads, expect_id=expect_id, public_key=public_key)


def generate(bundle, prompt: str, chat: bool = False, max_tokens: int = 64, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, stream: bool = False):
    """Generate from a causal-LM bundle (a path, or what :func:`open_llm` returned): the text, or with
    ``stream`` an iterator of text pieces as they are produced. Greedy unless ``temperature`` > 0."""
    from .runtime.generation import Sampling

    b = open_llm(bundle) if isinstance(bundle, (str, Path)) else bundle
    sampling = Sampling(max_new_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return b.stream(prompt, sampling, chat=chat) if stream else b.generate(prompt, sampling, chat=chat)


def llm_bench(bundles: list[str | Path], out: str | Path = "runs/llm-bench", teacher_bundle: str | Path | None = None,
              eager: list[str | Path] | None = None, threads: list[int] | None = None, repeats: int = 3,
              prompt_tokens: int = 64, new_tokens: int = 32, targets: list[str] | None = None) -> dict:
    """Bench causal-LM bundles (students) against ``teacher_bundle`` (same scheme) and ``eager`` HF folders
    (reference); writes OUT/llm_bench.json and .md and returns the report."""
    from .llm.bench import LLMModel, run_llm_bench

    def name(p, role):
        p = Path(p)
        return f"{role}:{p.parent.name}/{p.stem}" if p.parent.name else f"{role}:{p.stem}"

    models = [LLMModel(name(b, "student"), "bundle", str(b), "student") for b in bundles]
    if teacher_bundle:
        models.append(LLMModel(name(teacher_bundle, "teacher"), "bundle", str(teacher_bundle), "teacher"))
    models += [LLMModel(name(e, "eager"), "eager", str(e), "reference") for e in eager or []]
    return run_llm_bench(models, out, threads=tuple(threads or (1, 2)), repeats=repeats,
                         prompt_tokens=prompt_tokens, new_tokens=new_tokens, targets=targets)


def report(runs: list[str | Path], out: str | Path = "runs/comparison") -> dict[str, Path]:
    """Merge the bench reports of several run folders into comparison.html and comparison.md."""
    from .report.compare import compare

    return compare(runs, out)


def run(recipe: Recipe | str | Path | None = None, out: str | Path | None = None) -> dict:
    """distill -> export -> bench, sharing one workspace (data and teacher are loaded once).

    An LLM recipe (``kind = "llm"``) runs distill -> export -> bench -> report instead (:func:`llm_run`)."""
    own = _own_kind(recipe) if isinstance(recipe, (str, Path)) else None
    if own is not None:
        return own.pipeline(Path(recipe), Path(out) if out else None)
    from .bench.stage import run_bench
    from .distill.stage import run_distill
    from .export.stage import run_export

    ws = _workspace(recipe, out)
    from .tasks import task_of

    task_of(ws.recipe)  # an unknown strategy stops here, before any work
    run_distill(ws)
    run_export(ws)
    return run_bench(ws)
