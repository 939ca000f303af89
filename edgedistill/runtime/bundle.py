"""``Bundle``: verify, tokenise, run, and return embeddings / labels / scores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import backends
from ..errors import ModelError
from .format import BundleFiles, verify_files
from .tokenize import BundleTokenizer, check_texts

TASKS = ("sentence-embedding", "text-classification")


class Bundle:
    """An opened, verified bundle. Safe to share between threads: nothing mutates after ``open``."""

    def __init__(self, manifest: dict, tokenizer: BundleTokenizer, runner, input_names: list[str], path: Path,
                 bundle_id: str = ""):
        self.manifest = manifest
        self.tokenizer = tokenizer
        self._run = runner
        self.input_names = input_names
        self.path = path
        self.id = bundle_id
        """sha256 of the manifest: pins model, tokenizer and settings (pass it as ``expect_id`` to pin them)."""

    @classmethod
    def open(cls, path: str | os.PathLike, threads: int | None = None, expect_id: str | None = None,
             public_key: str | os.PathLike | None = None) -> Bundle:
        """Verify every file's sha256, load the tokenizer and create the model session.

        ``threads``: intra-op threads (default: the bundle's target thread count, capped at this machine's cores).
        ``expect_id``: refuse any bundle but the one with this id (:attr:`id`); ``public_key``: require a valid
        Ed25519 signature by this PEM public key (see :mod:`edgedistill.runtime.signing`).
        """
        files = BundleFiles(path)
        try:
            return cls(*_load(files, threads, expect_id, public_key), files.path, files.id)
        finally:
            files.close()

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw model outputs for already tokenised inputs ([batch, sequence] integer arrays)."""
        shape = None
        clean = {}
        for name in self.input_names:
            if name not in feed:
                raise ModelError(f"input {name!r} is missing (the bundle needs {', '.join(self.input_names)})")
            a = np.asarray(feed[name])
            if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
                raise ModelError(f"input {name!r} has shape {a.shape} and dtype {a.dtype}; the bundle expects "
                                 "an integer array of shape [batch, sequence]")
            if shape is not None and a.shape != shape:
                raise ModelError(f"input {name!r} has shape {a.shape}, the other inputs {shape}")
            if a.shape[1] > self.tokenizer.max_length:
                raise ModelError(f"input {name!r} has {a.shape[1]} tokens, over the bundle's max_length "
                                 f"{self.tokenizer.max_length}")
            shape = a.shape
            clean[name] = a.astype(np.int64, copy=False)
        return self._run(clean)

    def embed(self, texts: str | Sequence[str], batch_size: int = 32, truncate: bool = True) -> np.ndarray:
        """Sentence embeddings ``[len(texts), hidden]`` (pooled and normalised as the manifest says)."""
        texts = check_texts(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            feed = self.tokenizer(texts[start:start + batch_size], truncate=truncate)
            res = self.run(feed)
            if "sentence_embedding" not in res:
                raise ModelError(f"{self.path}: the model has no 'sentence_embedding' output")
            out.append(res["sentence_embedding"])
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict(self, texts: str | Sequence[str], truncate: bool = True) -> list[dict]:
        """Per text: ``{"embedding": [...]}``, or ``{"label", "score", "scores"}`` for a classifier."""
        texts = check_texts(texts)
        if self.task == "sentence-embedding":
            return [{"embedding": row.tolist()} for row in self.embed(texts, truncate=truncate)]
        labels = list(self.manifest.get("labels") or [])
        logits = self.run(self.tokenizer(texts, truncate=truncate))["logits"]
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        names = labels if len(labels) == probs.shape[1] else [str(i) for i in range(probs.shape[1])]
        return [{"label": names[int(p.argmax())], "score": float(p.max()),
                 "scores": dict(zip(names, map(float, p), strict=True))} for p in probs]


def check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise ModelError(f"threads must be an integer 1..1024 (or None for the target's), got {threads!r}")


def _load(files: BundleFiles, threads: int | None, expect_id: str | None = None, public_key=None):
    """(manifest, tokenizer, runner, input names) of a verified bundle."""
    check_threads(threads)
    manifest = verify_files(files, expect_id, public_key)
    task = manifest.get("task")
    if manifest.get("kind") == "causal-lm":
        raise ModelError(f"{files.path}: a causal-LM bundle (text generation); open it with "
                         "edgedistill.runtime.CausalLM or run 'edgedistill generate --bundle PATH \"prompt\"'")
    if task not in TASKS:
        raise ModelError(f"{files.path}: task {task!r} is not supported by this runtime ({', '.join(TASKS)})")
    backend = manifest.get("backend", "onnxruntime")
    if backend not in backends.BACKENDS:
        raise ModelError(f"{files.path}: backend {backend!r} is unknown (known: {', '.join(backends.BACKENDS)})")
    if threads is None:
        threads = min(int((manifest.get("target") or {}).get("threads") or 1), os.cpu_count() or 1)
    name = manifest["model_file"]
    where = f"{files.path}{'!' if files.is_zip else '/'}{name}"
    model = files.file_path(name) or files.read(name)
    runner = backends.get(backend).open(
        model, threads, where=where, made_with=(manifest.get("created_with") or {}).get(backend),
        outputs=[o["name"] for o in manifest.get("outputs", [])] or None,
        hint="for a torch-free app use an onnxruntime bundle (edgedistill export --target ... with an ONNX scheme)")
    graph_inputs = runner.input_names
    wanted = [i["name"] for i in manifest.get("inputs", [])]
    missing = [n for n in wanted if n not in graph_inputs]
    if missing or not wanted:
        raise ModelError(f"{where}: the model's inputs {graph_inputs} do not match the manifest's {wanted}")
    tok_spec = manifest["tokenizer"]
    tok = BundleTokenizer(files.read(tok_spec["file"]).decode("utf-8"), tok_spec, manifest.get("max_length", 512),
                          wanted)
    return manifest, tok, runner, wanted
