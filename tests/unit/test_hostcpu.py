"""Host CPU facts (/proc/cpuinfo) and the one thing onnxruntime is told because of them: exact int8 kernels on
x86 without VNNI, where its u8 x s8 kernels saturate."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill import hostcpu
from edgedistill.backends import ort as ort_backend

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse4_1 avx avx2 fma\n"
VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


@pytest.mark.parametrize("info, saturates", [(AVX2_ONLY, True), (VNNI, False), (ARM, False),
                                             ("processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n", False),
                                             ("processor\t: 0\nflags\t\t: fpu avx2 amx_int8\n", False)])
def test_int8_saturation_is_x86_avx2_without_an_int8_dot_unit(monkeypatch, info, saturates):
    monkeypatch.delenv(hostcpu.EXACT_INT8_ENV, raising=False)
    assert hostcpu.ort_int8_saturates(info) is saturates


@pytest.mark.parametrize("value, want", [("1", True), ("0", False), ("", True), ("maybe", True)])
def test_the_environment_overrides_the_detection(monkeypatch, value, want):
    monkeypatch.setenv(hostcpu.EXACT_INT8_ENV, value)
    assert hostcpu.ort_int8_saturates(AVX2_ONLY) is want


def _saturating_matmul():
    """uint8 255 x int8 127: every neighbouring pair of products (64,770) overflows int16."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((64, 8), 127, np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [4, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString(), w


@pytest.mark.parametrize("saturates", [True, False])
def test_session_asks_for_exact_int8_kernels_only_where_they_saturate(monkeypatch, saturates):
    monkeypatch.setattr(ort_backend, "ort_int8_saturates", lambda: saturates)
    options = ort_backend.session(_saturating_matmul()[0]).get_session_options()
    try:
        entry = options.get_session_config_entry("session.x64quantprecision")
    except Exception:  # onnxruntime raises when the key was never set
        entry = None
    assert entry == ("1" if saturates else None)
    assert ort_backend.int8_kernels().startswith("u8u8") is saturates


def test_a_saturating_int8_product_is_exact_on_this_host():
    # On an x86 host without VNNI this is the case that came out 1,048,544 instead of 2,072,640 before the fix.
    model, w = _saturating_matmul()
    x = np.full((4, 64), 255, np.uint8)
    y = ort_backend.session(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x.astype(np.int64) @ w.astype(np.int64))
