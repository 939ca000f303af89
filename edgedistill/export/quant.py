"""The onnxruntime encoder schemes' implementations.

Each turns an optimised fp32 ONNX file into the deployable one:
``fn(src, dest, ctx)``; ``ctx`` is a :class:`QuantContext` carrying the
calibration sentences that calibrated schemes need (others ignore it). The
scheme records (backend, tolerances, fallback, ...) are in
:mod:`edgedistill.export.schemes`, re-exported here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..fileutil import sha256_json
from .onnx import _quiet
from .schemes import SCHEMES, Scheme, check_scheme_fits, get_scheme  # noqa: F401  (re-exported)


@dataclass
class QuantContext:
    """Calibration inputs: training sentences tokenised like the app will tokenise them."""

    tokenizer: object = None
    texts: Sequence[str] = ()
    max_length: int = 128
    input_names: Sequence[str] = ()
    batch_size: int = 16
    activation_ranges: Sequence[tuple[np.ndarray, float, float]] = ()
    """(Linear weight [out, in], rmin, rmax): the input range of the MatMul holding that weight, observed by
    quantization-aware training (``[distill] qat = "int8-static"``); it replaces calibration for that input."""

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        texts = list(self.texts)
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            yield {n: np.asarray(enc[n], dtype=np.int64) for n in self.input_names}

    def fingerprint(self) -> str:
        """Changes whenever the calibration would (cache key for calibrated schemes)."""
        return sha256_json({"texts": list(self.texts), "max_length": self.max_length,
                            "inputs": list(self.input_names), "batch": self.batch_size,
                            "ranges": [[float(lo), float(hi)] for _, lo, hi in self.activation_ranges]})


def fp32(src: Path, dest: Path, ctx: QuantContext | None = None) -> None:
    shutil.copyfile(src, dest)


def int8_dynamic(src: Path, dest: Path, ctx: QuantContext | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        # Fused contrib ops (Attention, SkipLayerNormalization) have no shape
        # inference in the quantiser; tell it their outputs are float.
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _int8_embeddings(src: Path, dest: Path) -> None:
    """int8 word-embedding table (QEmbedLayerNormalization, or Gather when embeddings were not fused).

    The table (vocab x hidden) is most of a small student's bytes, and the
    QDQ and 4-bit quantisers leave it fp32; an int8 lookup costs almost no
    accuracy (the dynamic scheme does the same).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["EmbedLayerNormalization", "Gather"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a QuantContext."""

    def __init__(self, ctx: QuantContext):
        self._it = ctx.feeds()

    def get_next(self):
        return next(self._it, None)


def int8_static(src: Path, dest: Path, ctx: QuantContext | None = None) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if ctx is None or not ctx.texts:
        raise ModelError("int8-static needs calibration sentences (none were given)")
    typed, tmp = dest.with_name(dest.name + ".typed"), dest.with_name(dest.name + ".qdq")
    try:
        model = onnx.load(str(src))
        _type_matmul_inputs(model)
        onnx.save(model, str(typed))
        overrides = _range_overrides(model, ctx.activation_ranges)
        with _quiet():
            # MatMul/Gemm only: static QDQ of every op (LayerNorm, Add, Softmax
            # inputs) destroyed BERT's accuracy in the research (cosine 0.27).
            quantize_static(str(typed), str(tmp), _Reader(ctx), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                           "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
                                           **({"TensorQuantOverrides": overrides} if overrides else {})})
        _int8_embeddings(tmp, dest)
    finally:
        typed.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def _range_overrides(model, ranges) -> dict:
    """onnxruntime ``TensorQuantOverrides`` giving each QAT-observed range to the input of the MatMul (or Gemm)
    whose weight initializer is that Linear's weight. A range whose weight is not in the graph is of a module the
    graph does not use (a BERT pooler under an embedding graph); a MatMul with no range is an error (the export
    would calibrate it instead of using what training used)."""
    if not ranges:
        return {}
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    by_shape: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            w = w if transposed else w.T  # as a Linear stores it: [out, in]
            by_shape.setdefault(w.shape, []).append((node.input[0], w))
    out = {}
    for weight, lo, hi in ranges:
        for name, w in by_shape.get(tuple(weight.shape), []):
            if np.allclose(w, weight, atol=1e-6):
                out[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    missing = sorted({name for group in by_shape.values() for name, _ in group} - set(out))
    if missing:
        raise ModelError(f"no quantization-aware range for the MatMul input {missing[0]!r} ({len(missing)} in all): "
                         "the student's config.json qat_activation_ranges do not match its weights")
    return out


def _type_matmul_inputs(model) -> None:
    """Declare the activations that feed MatMul/Gemm as float.

    They come out of fused contrib ops (Attention, SkipLayerNormalization,
    BiasGelu) that ONNX shape inference does not know, and the static
    quantiser silently leaves untyped activations unquantised (weight-only).
    """
    from onnx import TensorProto, helper

    known = {v.name for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            if node.input[0] not in known:
                model.graph.value_info.append(helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
                known.add(node.input[0])


def int4_weight(src: Path, dest: Path, ctx: QuantContext | None = None) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet():
        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=32, is_symmetric=True,
                                 op_types_to_quantize=("MatMul",))
        q.process()
    tmp = dest.with_name(dest.name + ".nbits")
    try:
        q.model.save_model_to_file(str(tmp), use_external_data_format=False)
        _int8_embeddings(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fp16(src: Path, dest: Path, ctx: QuantContext | None = None) -> None:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    with _quiet():
        m = OnnxModel(onnx.load(str(src)))
        m.convert_float_to_float16(keep_io_types=True)
    onnx.save(m.model, str(dest))

