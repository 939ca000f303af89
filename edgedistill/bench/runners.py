"""Model runtimes the bench can time and score, one loader per kind.

A loader takes ``(path, threads, pooling, normalize)`` and returns a :class:`Loaded`. Adding a model
kind is one decorated function here plus its detection rule in :mod:`edgedistill.bench.kinds`. The
timing worker and the quality evaluation use the same loaders, so what is timed is what is scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..registry import Registry

RUNNERS: Registry = Registry("model kind", "edgedistill bench")


@dataclass
class Loaded:
    embed: Callable[[dict], np.ndarray]
    """Tokenizer features (numpy int64 arrays) -> ``[batch, hidden]`` sentence embeddings."""
    memory: Callable[[], dict]
    """The model's own memory as its runtime reports it; called after timing so it cannot raise peak RSS."""


def runner(kind: str):
    def deco(fn):
        return RUNNERS.add(kind, fn)

    return deco


# What each runtime imports before it can load anything. The worker imports these before its
# "bare process" memory reading, so a model's memory is what loading and running it adds, not the
# runtime's own libraries (the ExecuTorch Python runtime drags in torch; an app's C++ runtime does not).
RUNTIME_MODULES = {"torch": ("torch", "transformers"), "onnx": ("onnxruntime",),
                   "executorch": ("executorch.extension.pybindings.portable_lib", "executorch.runtime")}


def import_runtime(kind: str) -> None:
    import importlib

    for name in RUNTIME_MODULES.get(kind, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            return  # load() reports the missing runtime with its own one-line error


def load(kind: str, path: str | Path, threads: int, pooling: str = "mean", normalize: bool = True) -> Loaded:
    return RUNNERS.lookup(kind)(str(path), threads, pooling, normalize)


@runner("torch")
def _torch(path: str, threads: int, pooling: str, normalize: bool) -> Loaded:
    import torch

    torch.set_num_threads(threads)
    from ..models.encode import pool
    from ..models.loading import load_encoder

    from ..models.classifier import is_classifier_folder, load_classifier

    classifier = is_classifier_folder(Path(path))
    model = load_classifier(Path(path))[0] if classifier else load_encoder(Path(path))[0]

    def embed(feed):
        with torch.inference_mode():
            t = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in dict(feed).items()}
            if classifier:  # what a classifier app runs: encoder and head
                return model(**t).logits.float().numpy()
            hidden = model(**t).last_hidden_state
            return pool(hidden, t["attention_mask"], pooling, normalize).float().numpy()

    def memory():
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        return {"weights_bytes": params + buffers, "weights_source": "torch parameters + buffers",
                "arena_bytes": None, "arena_note": "PyTorch allocates from the process heap; see peak RSS"}

    return Loaded(embed, memory)


@runner("onnx")
def _onnx(path: str, threads: int, pooling: str, normalize: bool) -> Loaded:
    from ..export.onnx import run_session, session

    sess = session(Path(path), threads)
    names = [o.name for o in sess.get_outputs()]
    if "logits" in names:  # a classifier (edgedistill.tasks.classification): its final logits
        return Loaded(lambda feed: run_session(sess, dict(feed))["logits"],
                      lambda: {"weights_bytes": onnx_weights_bytes(path), "weights_source": "ONNX graph initializers",
                               "arena_bytes": None, "arena_note": "onnxruntime's Python API does not expose arena "
                                                                  "statistics; see peak RSS"})
    if "sentence_embedding" not in names and "last_hidden_state" not in names:
        raise ModelError(f"{path}: the ONNX model has neither a 'sentence_embedding' nor a 'last_hidden_state' "
                         f"output (outputs: {', '.join(names)}); export it with 'edgedistill export'")

    def embed(feed):
        feed = dict(feed)
        out = run_session(sess, feed)
        if "sentence_embedding" in out:
            return out["sentence_embedding"]
        # A graph exported elsewhere returns token states only; pool them as the recipe says.
        return _pool_np(out["last_hidden_state"], np.asarray(feed["attention_mask"]), pooling, normalize)

    return Loaded(embed, lambda: {"weights_bytes": onnx_weights_bytes(path),
                                  "weights_source": "ONNX graph initializers",
                                  "arena_bytes": None,
                                  "arena_note": "onnxruntime's Python API does not expose arena statistics; "
                                                "see peak RSS"})


@runner("executorch")
def _executorch(path: str, threads: int, pooling: str, normalize: bool) -> Loaded:
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise ModelError(f"{path}: benchmarking .pte models needs the executorch package: "
                         "pip install 'edgedistill[executorch]'")
    from ..export.pte import pte_runner
    run = pte_runner(path, threads)

    def embed(feed):
        return np.asarray(run({k: np.asarray(v, dtype=np.int64) for k, v in dict(feed).items()}))

    return Loaded(embed, lambda: {"weights_bytes": None, "weights_source": None, "arena_bytes": None,
                                  "arena_note": "the ExecuTorch runtime does not report its memory here; "
                                                "see peak RSS"})


def onnx_weights_bytes(path: str | Path) -> int:
    """Bytes of every initializer of an ONNX graph (inline or external), read from the protobuf only."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if init.raw_data:
            total += len(init.raw_data)
            continue
        n = int(np.prod(init.dims)) if init.dims else 1
        total += n * np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
    return total


def _pool_np(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    if pooling == "cls":
        emb = hidden[:, 0]
    else:
        m = mask[..., None].astype(hidden.dtype)
        emb = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12) if normalize else emb
