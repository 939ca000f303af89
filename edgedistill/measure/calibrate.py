"""Host peak throughput per thread, measured once with onnxruntime GEMMs and cached.

The device model (``modelled-v2``) no longer reads this: device figures come
from the model's workload and the target's constants alone. The calibration is
kept as a record of the host (``benchmarks/device_model.py`` computes every device
figure with this host's calibration and a stored one from a host with a
different ISA, to show that they do not move). Both figures use
the same MLAS kernels the benchmarked ONNX models run: MatMul for fp32 and
MatMulInteger (uint8 x int8, the dynamic-quantisation kernel) for int8.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..fileutil import sha256_json, write_json_atomic

SIZE = 1024
CALIBRATION_VERSION = 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gemm_model(kind: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [SIZE, SIZE])
        b = numpy_helper.from_array(rng.standard_normal((SIZE, SIZE)).astype(np.float32), "b")
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [SIZE, SIZE])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [SIZE, SIZE])
        b = numpy_helper.from_array(rng.integers(-127, 127, (SIZE, SIZE), dtype=np.int8), "b")
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [SIZE, SIZE])
    graph = helper.make_graph([node], "gemm", [a], [y], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _measure(kind: str, repeats: int = 8) -> float:
    """Best-of-N single-thread GMAC/s (best, not median: this is a peak)."""
    from ..backends import ort

    sess = ort.session(_gemm_model(kind), threads=1, where=f"the {kind} GEMM calibration model")
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((SIZE, SIZE)).astype(np.float32) if kind == "fp32"
         else rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
    sess.run(None, {"a": a})
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"a": a})
        best = min(best, time.perf_counter() - t0)
    return SIZE ** 3 / best / 1e9


def host_peaks(refresh: bool = False) -> dict:
    """{"fp32": GMAC/s per thread, "int8": GMAC/s per thread, ...}, cached per CPU and onnxruntime version."""
    import onnxruntime as ort

    key = sha256_json({"cpu": cpu_name(), "ort": ort.__version__, "v": CALIBRATION_VERSION, "size": SIZE})[:16]
    path = cache_dir("calibration") / f"{key}.json"
    if path.is_file() and not refresh:
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    result = {"fp32": _measure("fp32"), "int8": _measure("int8"), "cpu": cpu_name(), "onnxruntime": ort.__version__,
              "method": f"best of 8 single-thread {SIZE}^3 GEMMs in onnxruntime (MatMul fp32, MatMulInteger u8s8)",
              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(path, result)
    return result
