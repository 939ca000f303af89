"""``Bundle``: verify, tokenise, run, and return embeddings / labels / scores."""

from __future__ import annotations

import json

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import backends
from ..errors import ModelError
from .format import BundleFiles, verify_files
from .tokenize import BundleTokenizer, check_texts

TASKS = ("sentence-embedding", "classification", "text-classification")


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
        self._exit_runs: dict[int, object] = {}
        """Early-exit graphs by block (classifier bundles that ship ``exit_{k}.onnx``)."""

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
            b = cls(*_load(files, threads, expect_id, public_key), files.path, files.id)
            b._exit_runs = _load_exits(files, b.manifest, threads)
            return b
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

    def predict(self, texts: str | Sequence[str], truncate: bool = True, exit_threshold: float | None = None,
                batch_size: int = 32) -> list[dict]:
        """Per text: ``{"embedding": [...]}``, or for a classifier ``{"label", "score", "scores"}`` (the top
        class name, its probability, and every class's probability by name).

        ``exit_threshold``: for a classifier with early exits (manifest ``early_exits``), each text's
        answer comes from the first exit whose top probability is >= the threshold (the final head
        otherwise); the result then also names the ``exit`` used (a block index, or ``"final"``)."""
        texts = check_texts(texts)
        if self.task == "sentence-embedding":
            return [{"embedding": row.tolist()} for row in self.embed(texts, truncate=truncate)]
        names = self.labels
        exits = (self.manifest.get("early_exits") or {}).get("outputs") or []
        if exit_threshold is not None and not 0.0 <= float(exit_threshold) <= 1.0:
            raise ModelError(f"exit_threshold {exit_threshold!r}: expected a probability in [0, 1]")
        out = []
        for start in range(0, len(texts), batch_size):
            feed = self.tokenizer(texts[start:start + batch_size], truncate=truncate)
            if exit_threshold is not None and self._exit_runs:
                probs, used = self._cascade(feed, float(exit_threshold))
            else:
                res = self.run(feed)
                probs = softmax(res["logits"])
                used = ["final"] * len(probs)
            if exit_threshold is not None and exits and not self._exit_runs:
                done = np.zeros(len(probs), dtype=bool)
                chosen = probs.copy()
                for name in exits:
                    p = softmax(res[name])
                    take = ~done & (p.max(axis=1) >= exit_threshold)
                    chosen[take] = p[take]
                    for i in np.flatnonzero(take):
                        used[i] = int(name.split("_")[1])
                    done |= take
                probs = chosen
            if len(names) != probs.shape[1]:
                names = [str(i) for i in range(probs.shape[1])]
            for p, where in zip(probs, used, strict=True):
                row = {"label": names[int(p.argmax())], "score": float(p.max()),
                       "scores": dict(zip(names, map(float, p), strict=True))}
                if exit_threshold is not None and exits:
                    row["exit"] = where
                out.append(row)
        return out

    def _cascade(self, feed: dict, threshold: float) -> tuple[np.ndarray, list]:
        """The exit segments in block order, each on the texts still undecided and fed the previous
        segment's hidden states, then the rest of the model on the texts no exit was sure of."""
        n = len(feed[self.input_names[0]])
        pending = np.arange(n)
        mask = np.asarray(feed["attention_mask"]).astype(np.int64)
        out: np.ndarray | None = None
        used: list = ["final"] * n
        hidden = None
        for k, (layer, run) in enumerate(self._exit_runs.items()):
            if not len(pending):
                break
            if k == 0:
                res = run({n_: np.asarray(v).astype(np.int64) for n_, v in feed.items() if n_ in self.input_names})
            else:
                res = run({"hidden_in": hidden, "attention_mask": mask[pending]})
            if layer == "rest":
                p, take = softmax(res["logits"]), np.ones(len(pending), dtype=bool)
            else:
                p = softmax(res["logits"])
                take = p.max(axis=1) >= threshold
            out = np.zeros((n, p.shape[1]), dtype=np.float32) if out is None else out
            out[pending[take]] = p[take]
            for i in pending[take]:
                used[int(i)] = layer if layer != "rest" else "final"
            hidden = res.get("hidden_out")
            hidden = hidden[~take] if hidden is not None else None
            pending = pending[~take]
        return out, used

    @property
    def labels(self) -> list[str]:
        """Class names by id (classifier bundles; empty otherwise)."""
        return [str(x) for x in (self.manifest.get("labels") or [])]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _load_exits(files: BundleFiles, manifest: dict, threads: int | None) -> dict:
    """Runners of the early-exit segments a classifier bundle ships (ONNX bundles), in chain order: one per
    exit block, then ``"rest"``. Empty for bundles without segments: their exits come from the full graph."""
    ee = manifest.get("early_exits") or {}
    models, rest = ee.get("models") or {}, ee.get("rest")
    if not models or not rest or manifest.get("backend", "onnxruntime") != "onnxruntime":
        return {}
    if not isinstance(models, dict) or not isinstance(rest, str) or not all(
            isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in models.items()):
        raise ModelError(f"{files.path}: manifest 'early_exits' must map block numbers to file names, "
                         f"got {json.dumps(ee)[:80]}")
    threads = bundle_threads(manifest, threads)
    out: dict = {}
    for layer, name in [*((int(k), models[k]) for k in sorted(models, key=int)), ("rest", rest)]:
        where = f"{files.path}{'!' if files.is_zip else '/'}{name}"
        out[layer] = backends.get("onnxruntime").open(files.file_path(name) or files.read(name), threads,
                                                      where=where).run
    return out


def bundle_threads(manifest: dict, threads: int | None) -> int:
    """``threads``, or the bundle target's thread count capped at this machine's cores."""
    if threads is not None:
        return threads
    return min(int((manifest.get("target") or {}).get("threads") or 1), os.cpu_count() or 1)


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
    threads = bundle_threads(manifest, threads)
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
