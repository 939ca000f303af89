"""Model runners chosen by the manifest's ``backend``: onnxruntime (torch-free)
or ExecuTorch (its Python runtime links libtorch, so it is imported lazily
and only for ``.pte`` bundles)."""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ModelError

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _explain_ort(e: Exception, where: str, manifest: dict) -> str:
    text = " ".join(str(e).split())
    made = (manifest.get("created_with") or {}).get("onnxruntime")
    import onnxruntime as ort

    if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text or "No graph was found" in text:
        return f"{where} is not an ONNX model onnxruntime can read (corrupt or not a model); re-export the bundle"
    if "opset" in text.lower() or "Could not find an implementation" in text or "not a registered" in text:
        return (f"{where} uses operators this onnxruntime {ort.__version__} does not provide ({text[:160]}); "
                f"install onnxruntime{'>=' + made if made else ' of the version that exported it'} "
                "(a reduced mobile build must include the com.microsoft contrib ops)")
    return f"{where}: onnxruntime {ort.__version__} cannot load the model ({text[:200]})"


def onnx_runner(model: bytes | Path, threads: int, where: str, manifest: dict) -> tuple[Runner, list[str]]:
    """An onnxruntime session; ``InferenceSession.run`` is safe to call from several threads at once."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("onnxruntime is not installed; pip install 'edgedistill[runtime]'") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(0, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes (Fail, InvalidProtobuf, ...)
        raise ModelError(_explain_ort(e, where, manifest)) from None
    names = [o.name for o in sess.get_outputs()]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(None, feed), strict=True))

    return run, [i.name for i in sess.get_inputs()]


def require_executorch(where: str, torch_free: str) -> None:
    """A one-line error, before any import, when a .pte bundle meets an install without executorch/torch;
    ``torch_free`` says how to get an ONNX bundle of the same model instead."""
    if importlib.util.find_spec("executorch") is None or importlib.util.find_spec("torch") is None:
        raise ModelError(f"{where} is an ExecuTorch (.pte) bundle: its Python runtime needs the executorch package, "
                         "which needs torch (pip install executorch==1.5.1 in the training environment); for a "
                         f"torch-free app {torch_free}")


def executorch_runner(model: bytes | Path, threads: int, where: str, manifest: dict) -> tuple[Runner, list[str]]:
    require_executorch(where, "use an onnxruntime bundle (edgedistill export --target ... with an ONNX scheme)")
    try:  # imports torch: only ever reached for .pte bundles
        from ..export.pte import pte_runner
    except ImportError:
        from ..export.executorch import pte_runner

    if isinstance(model, bytes):  # zip bundle: the ExecuTorch loader wants a file
        tmp = tempfile.NamedTemporaryFile(suffix=".pte", delete=False)
        tmp.write(model)
        tmp.close()
        model = Path(tmp.name)
    # A classifier's program returns every exit's logits and the final ones: keep them all, by name.
    raw = pte_runner(model, threads, **({"all_outputs": True} if manifest.get("task") == "classification" else {}))
    out_names = [o["name"] for o in manifest.get("outputs", [])]
    lock = threading.Lock()  # an ExecuTorch method is not safe to execute from two threads at once

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            out = raw(feed)
        if isinstance(out, np.ndarray):  # the .pte runner returns the sentence embeddings only
            return {"sentence_embedding": out}
        if isinstance(out, dict):
            return {k: np.asarray(v) for k, v in out.items()}
        return dict(zip(out_names, (np.asarray(v) for v in out), strict=False))

    return run, [i["name"] for i in manifest.get("inputs", [])]


BACKENDS = {"onnxruntime": onnx_runner, "executorch": executorch_runner}
