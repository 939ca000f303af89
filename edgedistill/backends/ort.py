"""onnxruntime: ``.onnx`` files, torch-free (onnxruntime + numpy).

The one place an ``InferenceSession`` is built: the app runtime, the bench,
the export parity check and the causal-LM runtime (:class:`OnnxLM`) all open
ONNX files here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError
from ..hostcpu import ort_int8_saturates
from .base import Runner, require_packages

NAME = "onnxruntime"
LABEL = "onnxruntime"
"""What reports call this runtime."""
SUFFIX = ".onnx"
EXTRA = "runtime"
TORCH_FREE = True
RUNTIME_MODULES = ("onnxruntime",)
"""Imported before a bench worker's "bare process" memory reading."""


def require(where: str = "this model", hint: str = "") -> None:
    require_packages(("onnxruntime",), f"{where} (ONNX)", EXTRA, hint=hint)


def _explain(e: Exception, where: str, made_with: str | None) -> str:
    import onnxruntime as ort

    text = " ".join(str(e).split())
    if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text or "No graph was found" in text:
        return (f"{where}: onnxruntime cannot load the model: it is not an ONNX model onnxruntime can read "
                "(corrupt or not a model); re-export it")
    if "opset" in text.lower() or "Could not find an implementation" in text or "not a registered" in text:
        return (f"{where} uses operators this onnxruntime {ort.__version__} does not provide ({text[:160]}); "
                f"install onnxruntime{'>=' + made_with if made_with else ' of the version that exported it'} "
                "(a reduced mobile build must include the com.microsoft contrib ops)")
    return f"{where}: onnxruntime cannot load the model (onnxruntime {ort.__version__}: {text[:200]})"


def session(model: bytes | str | Path, threads: int = 1, where: str | None = None, made_with: str | None = None):
    """An ``InferenceSession`` on the CPU provider; ``run`` is safe to call from several threads at once."""
    where = where or ("this model" if isinstance(model, bytes) else str(model))
    require(where)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(0, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if ort_int8_saturates():
        # Without VNNI the default u8 x s8 kernels clamp pair sums to int16 and int8 models drift from what the
        # device computes (parity gates fail, quality reads low); u8u8 is exact. Not set elsewhere: on a VNNI
        # host it only costs time (2.4x on int8 MatMuls, measured on an AMD EPYC with avx512_vnni).
        so.add_session_config_entry("session.x64quantprecision", "1")
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes (Fail, InvalidProtobuf, ...)
        raise ModelError(_explain(e, where, made_with)) from None


def int8_kernels() -> str:
    """Which int8 kernels :func:`session` gets on this host, for reports (latency of int8 models depends on it)."""
    if ort_int8_saturates():
        return "u8u8 (exact; session.x64quantprecision on, for an x86 CPU without VNNI)"
    return "default"


def open(model: bytes | str | Path, threads: int = 1, where: str | None = None, made_with: str | None = None,
         **_) -> Runner:
    """A :class:`Runner` over one session; inputs the graph does not take are dropped."""
    sess = session(model, threads, where, made_with)
    names = [o.name for o in sess.get_outputs()]
    inputs = [i.name for i in sess.get_inputs()]
    wanted = set(inputs)

    def run(feed) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(None, {k: v for k, v in feed.items() if k in wanted}), strict=True))

    path = None if isinstance(model, bytes) else model
    return Runner(NAME, run, inputs, names, lambda: memory(path))


def memory(path: str | Path | None) -> dict:
    return {"weights_bytes": weights_bytes(path) if path is not None else None,
            "weights_source": "ONNX graph initializers", "arena_bytes": None,
            "arena_note": "onnxruntime's Python API does not expose arena statistics; see peak RSS"}


def weights_bytes(path: str | Path) -> int:
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


def open_lm(path: str | Path, max_cache_len: int, threads: int = 1) -> OnnxLM:
    return OnnxLM(path, max_cache_len, threads)


class OnnxLM:
    """An ONNX causal LM with past key/values (from :mod:`edgedistill.llm.export_onnx`); ``step(ids, pos)``
    feeds tokens at positions pos.. and returns the last logits, as ``PteLM`` / ``EagerLM`` do, so
    :func:`edgedistill.runtime.generation.stream` drives any of them.

    The past key/values of the previous calls are kept; ``pos`` below the cached
    length rewinds the cache (``pos == 0`` starts afresh), ``pos`` above it is an error.
    """

    def __init__(self, path: str | Path, max_cache_len: int, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: ONNX file not found")
        self.session = session(path, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        if "input_ids" not in inputs or not self.past_names or len(self.past_names) % 2:
            raise ModelError(f"{path}: not a causal LM with past key/values (inputs: {', '.join(inputs)}); "
                             "export it with edgedistill.llm.export_onnx")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.present_names = [n.replace("past_key_values.", "present.", 1) for n in self.past_names]
        missing = [n for n in ["logits", *self.present_names] if n not in self.output_names]
        if missing:
            raise ModelError(f"{path}: the graph lacks outputs {', '.join(missing[:3])}; "
                             "export it with edgedistill.llm.export_onnx")
        _, kv_heads, _, head_dim = inputs[self.past_names[0]].shape
        if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
            raise ModelError(f"{path}: past key/value inputs need static head counts and sizes")
        self.empty = np.zeros((1, kv_heads, 0, head_dim), dtype=np.float32)
        self.max_cache_len = max_cache_len
        self.path = path
        self.reset()

    def reset(self) -> None:
        self.past = [self.empty] * len(self.past_names)
        self.length = 0

    def step_np(self, ids: list[int], pos: int) -> np.ndarray:
        if pos == 0 or pos < self.length:
            self.past = [np.ascontiguousarray(p[:, :, :pos]) for p in self.past]
            self.length = pos
        if pos != self.length:
            raise DataError(f"step at position {pos}, but the cache holds {self.length} tokens: feed tokens in order")
        if not ids:
            raise DataError("step needs at least one token")
        if pos + len(ids) > self.max_cache_len:
            raise DataError(f"{pos + len(ids)} tokens exceed this model's context of {self.max_cache_len}")
        feed = {"input_ids": np.asarray([ids], dtype=np.int64), **dict(zip(self.past_names, self.past, strict=True))}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        self.past = [out[n] for n in self.present_names]
        self.length = pos + len(ids)
        return out["logits"][0, -1].astype(np.float32, copy=False)

    step = step_np
