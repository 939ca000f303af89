"""What a model path is: a Hugging Face folder, an ONNX file, an ExecuTorch ``.pte`` file, or a bundle.

:func:`detect` looks at the path once and returns a :class:`Source` saying which runner
(a backend of :mod:`edgedistill.backends`) runs it, where its tokenizer is, its size on disk, its
quantization and, where it can be read, its encoder shape (for MAC counts, the position limit and
the device model). Anything else is refused with one line saying what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import backends
from ..backends import et
from ..errors import ModelError
from ..measure import native
from ..measure.macs import EncoderShape

EXPECTED = "expected a Hugging Face model folder, a .onnx or .pte file, or a bundle folder"


@dataclass
class Source:
    path: Path
    """What the user named."""
    backend: str
    """The backend that runs it: torch, onnxruntime or executorch (:mod:`edgedistill.backends`), or ``native``
    (the C++ runtime, :mod:`edgedistill.measure.native`)."""
    model_file: Path
    """What the backend loads (the folder for torch)."""
    quantization: str
    size_bytes: int
    tokenizer_dir: Path | None = None
    shape: EncoderShape | None = None
    pooling: str | None = None
    normalize: bool | None = None
    """From a bundle manifest; None means the recipe's."""
    bundle: dict | None = None
    """The verified manifest, for a bundle."""

    @property
    def runtime(self) -> str:
        """The backend's name in reports (``pytorch`` for torch)."""
        return native.LABEL if self.backend == native.NAME else backends.get(self.backend).LABEL

    @property
    def label(self) -> str:
        p = self.path
        if p.suffix:
            # Exported files are all called model-<scheme>.onnx; the folder says whose they are.
            return f"{p.parent.name}/{p.name}" if p.name.startswith("model") and p.parent.name else p.name
        if self.bundle is not None and p.parent.name == "bundles":
            # RUN/bundles/TARGET: the run folder names the model, the folder name only the target.
            return f"{p.parent.parent.name}/{p.name} ({self.runtime}, {self.quantization})"
        # Packaged models often sit in a folder called "model"; its parent says which one.
        name = p.name if p.name not in ("model", "") else f"{p.parent.name}/{p.name}"
        return f"{name} ({self.runtime})"


def check_tokenizer_dir(path: str | Path) -> Path:
    t = Path(path)
    if not (t / "tokenizer_config.json").is_file() and not (t / "tokenizer.json").is_file():
        raise ModelError(f"{t}: not a tokenizer folder (no tokenizer.json or tokenizer_config.json)")
    return t


def detect(path: str | Path) -> Source:
    if str(path).startswith(native.PREFIX):  # the same bundle, run by the native C++ runtime
        src = detect(str(path)[len(native.PREFIX):])
        if src.bundle is None:
            raise ModelError(f"{path}: the native runtime runs bundle folders (manifest, tokenizer and .pte), not a "
                             "bare model file or model folder; export one with 'edgedistill export --quant et-int8'")
        native.check_bundle(src.bundle, str(src.path))
        src.backend, src.model_file = native.NAME, src.path
        return src
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file or folder")
    if p.is_dir():
        src = _bundle(p) if (p / "manifest.json").is_file() else _hf(p) if (p / "config.json").is_file() else None
        if src is None:
            raise ModelError(f"{p}: not a model folder (no config.json or manifest.json); {EXPECTED}")
    else:
        inspect = {backends.get("onnxruntime").SUFFIX: _onnx, et.SUFFIX: _pte}  # each backend's file suffix
        if p.suffix not in inspect:
            raise ModelError(f"{p}: not a model file; {EXPECTED}")
        src = inspect[p.suffix](p)
    return src


def _hf(p: Path) -> Source:
    from ..models.loading import weights_file

    w = weights_file(p)
    try:
        cfg = json.loads((p / "config.json").read_text())
        shape = EncoderShape.from_config(cfg)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{p / 'config.json'}: unreadable ({e})") from None
    if None in (shape.vocab, shape.hidden, shape.layers, shape.positions):
        shape = None
    return Source(p, "torch", p, "fp32", w.stat().st_size, tokenizer_dir=p, shape=shape)


def _bundle(p: Path) -> Source:
    from ..export.bundle import verify_bundle

    m = verify_bundle(p)
    model = p / m["model_file"]
    executorch = m.get("backend") == "executorch" or model.suffix == et.SUFFIX
    src = _pte(model) if executorch else _onnx(model)
    src.path, src.tokenizer_dir, src.bundle = p, p, m
    src.quantization = (m.get("quantization") or {}).get("scheme", src.quantization)
    src.pooling, src.normalize = m.get("pooling"), m.get("normalize")
    student_cfg = Path((m.get("student") or {}).get("path") or p / "missing") / "config.json"
    if src.shape is None and student_cfg.is_file():
        src.shape = EncoderShape.from_config(json.loads(student_cfg.read_text()))
    return src


def _onnx(p: Path) -> Source:
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends for any non-ONNX bytes
        raise ModelError(f"{p}: not an ONNX model ({' '.join(str(e).split())[:120] or type(e).__name__})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: not an ONNX model (the graph has no nodes)")
    ops = {n.op_type for n in model.graph.node}
    if ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention"}:
        quant = "int8-dynamic"
    elif "QuantizeLinear" in ops:
        quant = "int8-static"
    else:
        quant = "fp32"
    size = p.stat().st_size + sum(f.stat().st_size for f in p.parent.glob(p.name + ".data") if f.is_file())
    return Source(p, "onnxruntime", p, quant, size, shape=onnx_shape(model))


def _pte(p: Path) -> Source:
    if not et.is_program(p):
        raise ModelError(f"{p}: not an ExecuTorch program (no ExecuTorch file identifier)")
    return Source(p, "executorch", p, "unknown", p.stat().st_size)


def onnx_shape(model) -> EncoderShape | None:
    """The encoder shape read off a BERT-style graph's initializers, or None if it does not look like one."""
    dims = {i.name: list(i.dims) for i in model.graph.initializer}

    def find(suffix: str) -> list[int] | None:
        return next((d for n, d in dims.items() if n.endswith(suffix)), None)

    words, pos = find("word_embeddings.weight"), find("position_embeddings.weight")
    ffn_bias = [d for n, d in dims.items() if n.endswith("intermediate.dense.bias")]
    if not (words and pos and ffn_bias):
        return None
    attention = [n for n in model.graph.node if n.op_type in ("Attention", "QAttention", "MultiHeadAttention")]
    heads = next((a.i for n in attention for a in n.attribute if a.name == "num_heads"), None)
    # One attention (fused) or one Softmax (unfused) per layer; initializer names are no guide, since
    # the exporter merges identical initializers (e.g. all-zero biases) across layers.
    layers = len(attention) or sum(n.op_type == "Softmax" for n in model.graph.node)
    if not layers:
        return None
    tt = find("token_type_embeddings.weight")
    return EncoderShape(vocab=words[0], hidden=words[1], layers=layers, ffn=ffn_bias[0][0],
                        heads=heads or max(1, words[1] // 64), positions=pos[0], type_vocab=tt[0] if tt else 0)
