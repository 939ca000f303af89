"""Run an exported ``.pte`` with the ExecuTorch Python runtime.

Programs are fixed-shape (batch 1, ``max_length`` tokens; see executorch.py),
so each row is padded or clipped to that length and run on its own. The
XNNPACK threadpool can only be sized before the first program is loaded:
resizing it afterwards aborts the process (deps.md), so later requests for
another thread count keep the first one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError

# Program inputs are a prefix-ordered subset of these (see onnx.input_names_for).
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
_state = {"loaded": False, "threads": None}


def set_threads(threads: int) -> int:
    """Size the XNNPACK threadpool once per process; returns the count in effect."""
    from executorch.extension.pybindings import portable_lib

    if not _state["loaded"] and _state["threads"] is None:
        portable_lib._unsafe_reset_threadpool(max(1, int(threads)))
        _state["threads"] = int(threads)
    return portable_lib._threadpool_get_thread_count()


def load_method(path: Path, threads: int = 1):
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such .pte file")
    from .executorch import require_executorch

    require_executorch()
    set_threads(threads)
    # Registers the int8 embedding kernels; without it a quantised program fails to load with
    # "Missing operator: quantized_decomposed::embedding_byte.out".
    import executorch.kernels.quantized  # noqa: F401
    from executorch.runtime import Runtime

    _state["loaded"] = True
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as e:  # the pybinding raises RuntimeError/ValueError with a hex error code
        text = " ".join(str(e).split())[:200]
        raise ModelError(f"{path}: the ExecuTorch runtime cannot load the program ({text}); re-export it with "
                         "'edgedistill export' using this executorch version") from None
    if method is None:
        raise ModelError(f"{path}: the program has no 'forward' method")
    return method


def _fit(a: np.ndarray, length: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64).reshape(-1)[:length]
    return np.pad(a, (0, length - len(a)))


def pte_runner(path: str | Path, threads: int = 1, all_outputs: bool = False):
    """``run(feed) -> [B, H]`` for a feed of token arrays ``[B, T]`` (any T; padded or clipped): the
    program's last output (embeddings of an encoder, logits of a classifier); with ``all_outputs``, the
    list of every output, rows stacked."""
    import torch

    method = load_method(Path(path), threads)
    meta = method.metadata
    names = INPUT_ORDER[: meta.num_inputs()]
    length = int(meta.input_tensor_meta(0).sizes()[-1])

    def run(feed) -> np.ndarray:
        feed = {k: np.asarray(v) for k, v in dict(feed).items()}
        missing = [n for n in names if n != "token_type_ids" and n not in feed]
        if missing:
            raise ModelError(f"{path}: input {missing[0]!r} missing (the program takes {', '.join(names)})")
        rows = len(feed["input_ids"])
        out = []
        for i in range(rows):
            args = [torch.from_numpy(_fit(feed[n][i] if n in feed else np.zeros(length), length)).view(1, length)
                    for n in names]
            res = method.execute(args)
            # The last output: the sentence embedding of an encoder, the final logits of a classifier.
            out.append([t.numpy() for t in res] if all_outputs else res[-1].numpy())
        if all_outputs:
            return [np.concatenate([o[k] for o in out], axis=0) for k in range(len(out[0]))]
        return np.concatenate(out, axis=0)

    return run


def pte_embedder(path: Path, threads: int = 1):
    """Like onnx.onnx_embedder: a callable for models.encode.batched_embed."""
    run = pte_runner(path, threads)
    return lambda feats: run({k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in dict(feats).items()})
