"""What the bench times and scores: any backend's model, as sentence embeddings.

A model is opened by its backend (:mod:`edgedistill.backends`: onnxruntime,
executorch, torch); this module only turns the backend's outputs into
embeddings. The timing worker and the quality evaluation both use :func:`load`,
so what is timed is what is scored. Adding a runtime is a backend module, not
a change here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backends
from ..errors import ModelError


@dataclass
class Loaded:
    embed: Callable[[dict], np.ndarray]
    """Tokenizer features (numpy int64 arrays) -> ``[batch, hidden]`` sentence embeddings."""
    memory: Callable[[], dict]
    """The model's own memory as its runtime reports it; called after timing so it cannot raise peak RSS."""


def import_runtime(backend: str) -> None:
    """Import what the backend imports before it can load anything. The worker does this before its
    "bare process" memory reading, so a model's memory is what loading and running it adds, not the
    runtime's own libraries (the ExecuTorch Python runtime drags in torch; an app's C++ runtime does not)."""
    import importlib

    for name in backends.get(backend).RUNTIME_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return  # load() reports the missing runtime with its own one-line error


def load(backend: str, path: str | Path, threads: int, pooling: str = "mean", normalize: bool = True) -> Loaded:
    """``backend``: a backend name (``onnxruntime``, ``executorch``, ``torch``) or its report label."""
    runner = backends.get(backend).open(str(path), threads, pooling=pooling, normalize=normalize)
    if "logits" in runner.output_names:  # a classifier (edgedistill.tasks.classification): its final logits
        return Loaded(lambda feed: runner.run(backends.as_numpy(feed))["logits"], runner.memory)
    if "sentence_embedding" not in runner.output_names and "last_hidden_state" not in runner.output_names:
        raise ModelError(f"{path}: the model has neither a 'sentence_embedding' nor a 'last_hidden_state' "
                         f"output (outputs: {', '.join(runner.output_names)}); export it with 'edgedistill export'")

    def embed(feed):
        feed = backends.as_numpy(feed)
        out = runner.run(feed)
        if "sentence_embedding" in out:
            return out["sentence_embedding"]
        # A graph exported elsewhere returns token states only; pool them as the recipe says.
        return _pool_np(out["last_hidden_state"], np.asarray(feed["attention_mask"]), pooling, normalize)

    return Loaded(embed, runner.memory)



def _pool_np(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    if pooling == "cls":
        emb = hidden[:, 0]
    else:
        m = mask[..., None].astype(hidden.dtype)
        emb = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12) if normalize else emb
