"""Run an ONNX causal LM (from :mod:`edgedistill.llm.export_onnx`) with onnxruntime, keeping the KV cache.

Torch-free: onnxruntime and numpy only. ``step(ids, pos)`` has the interface of
``PteLM`` / ``EagerLM``, so :func:`edgedistill.runtime.generation.stream` drives
any of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError


class OnnxLM:
    """A loaded ONNX causal LM; ``step(ids, pos)`` feeds tokens at positions pos.. and returns the last logits.

    The past key/values of the previous calls are kept; ``pos`` below the cached
    length rewinds the cache (``pos == 0`` starts afresh), ``pos`` above it is an error.
    """

    def __init__(self, path: str | Path, max_cache_len: int, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: ONNX file not found")
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"{path}: onnxruntime cannot load the model ({' '.join(str(e).split())[:200]})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        if "input_ids" not in inputs or not self.past_names or len(self.past_names) % 2:
            raise ModelError(f"{path}: not a causal LM with past key/values (inputs: {', '.join(inputs)}); "
                             "export it with edgedistill.llm.export_onnx")
        outputs = [o.name for o in self.session.get_outputs()]
        self.present_names = [n.replace("past_key_values.", "present.", 1) for n in self.past_names]
        missing = [n for n in ["logits", *self.present_names] if n not in outputs]
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
        out = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, feed), strict=True))
        self.past = [out[n] for n in self.present_names]
        self.length = pos + len(ids)
        return out["logits"][0, -1].astype(np.float32, copy=False)

    step = step_np
