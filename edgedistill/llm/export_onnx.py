"""ONNX export of a Llama-style causal LM with past key/values, fp32, int8 or int4 weight-only.

One graph serves prefill and decode:

- inputs ``input_ids`` [1, s] and ``past_key_values.N.key`` / ``.value``
  [1, kv_heads, past, head_dim] (``past`` may be 0 for the prefill);
- outputs ``logits`` [1, 1, vocab] (last position only: generation needs no
  more, and the lm_head over every prompt position is the prefill's biggest
  MatMul) and ``present.N.key`` / ``.value`` [1, kv_heads, past + s, head_dim].

No attention mask or position ids: batch 1 never pads, and the model derives
positions and the causal mask from the cache length it is given.

Exporter (measured with torch 2.13, transformers 5.24): ``torch.onnx.export(...,
dynamo=True)`` on a wrapper that takes and returns flat tensors and rebuilds a
``DynamicCache`` inside. The model must use ``attn_implementation="eager"``: the
SDPA path fails in export (``is_causal`` becomes a SymBool). The TorchScript
exporter (which the encoder path uses for onnxruntime's fusions) fails on
transformers-5 Llama (``aten::diff`` in the mask code). Both failures are from
research/deps.md, not re-run here. The fp32 graph is
checked against the eager model (prefill and two decode steps) before anything is
written.

Schemes (canonical names, see edgedistill.export.schemes; ``int8`` / ``int4`` still work
here): ``fp32``; ``int8-weight`` and ``int4-weight`` = weight-only ``MatMulNBits`` (8 or 4
bits, blocks of 32, symmetric) on every linear including the lm_head, plus an
int8 embedding table; ``int8-dynamic`` = onnxruntime ``quantize_dynamic``
(per-channel int8 weights, activations quantized per tensor at run time). On the
real SmolLM2-135M teacher the per-tensor activation quantization of
``int8-dynamic`` moved the last-position logits by 6-14 (max abs) where 8-bit
weight-only moved them by 0.4-1.0, so ``int8-weight`` is the bundles' int8 choice.
The tied lm_head reads the embedding through a Transpose that the exporter only
constant-folds for small tables; the quantized schemes first give it its own
initializer (see ``_untie_lm_head``), so fp32 stores the matrix once and the
quantized files store it twice (int8 table + quantized lm_head).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..fileutil import write_json_atomic
from ..registry import Registry

OPSET = 18
PROTOBUF_LIMIT = 2_000_000_000
"""A single-file ONNX model must stay under protobuf's 2 GB."""


@dataclass(frozen=True)
class LmScheme:
    name: str
    fn: Callable[[Path, Path], None]
    """``fn(fp32_onnx, dest)``."""
    description: str


ONNX_LM_SCHEMES: Registry[LmScheme] = Registry("ONNX LM quantization", "LLM ONNX export")


def _register(name: str, description: str):
    def deco(fn):
        ONNX_LM_SCHEMES.add(name, LmScheme(name, fn, description))
        return fn

    return deco


@_register("fp32", "no quantization")
def _fp32(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)


def _untie_lm_head(src: Path, dest: Path) -> None:
    """Give the lm_head MatMul its own pre-transposed weight when it reads the embedding through a Transpose.

    For a tied model the exporter writes ``MatMul(h, Transpose(embedding))``,
    constant-folded only for small tables. A MatMul whose weight is not an
    initializer is left fp32 by both quantizers, and once the Gather table is
    int8 onnxruntime would de-quantize and transpose the whole table on every
    step; untied, the embedding (int8 Gather) and the lm_head (int8/int4
    MatMul) quantize separately.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    users = {}
    for n in graph.node:
        for x in n.input:
            users[x] = users.get(x, 0) + 1
    for node in graph.node:
        if node.op_type != "MatMul" or "logits" not in node.output:
            continue
        tr = producer.get(node.input[1])
        perm = [a.ints for a in tr.attribute if a.name == "perm"] if tr is not None else []
        if tr is None or tr.op_type != "Transpose" or tr.input[0] not in inits or (perm and list(perm[0]) != [1, 0]):
            continue
        weight = numpy_helper.to_array(inits[tr.input[0]]).T.copy()
        name = tr.output[0] + "_untied"
        graph.initializer.append(numpy_helper.from_array(weight, name))
        node.input[1] = name
        if users[tr.output[0]] == 1:
            graph.node.remove(tr)
    onnx.save(model, str(dest))


def _nbits(src: Path, dest: Path, bits: int) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from ..export.onnx import _quiet

    untied, tmp = dest.with_name(dest.name + ".untied"), dest.with_name(dest.name + ".nbits")
    try:
        _untie_lm_head(src, untied)
        with _quiet():
            # accuracy_level 4 = int8 compute inside MatMulNBits, the fast CPU kernel for LLM decoding
            q = MatMulNBitsQuantizer(onnx.load(str(untied)), bits=bits, block_size=32, is_symmetric=True,
                                     accuracy_level=4, op_types_to_quantize=("MatMul",))
            q.process()
            q.model.save_model_to_file(str(tmp), use_external_data_format=False)
            # MatMulNBits leaves the embedding table fp32; it is most of a small model's bytes
            quantize_dynamic(str(tmp), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["Gather"])
    finally:
        untied.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


@_register("int8-weight", "8-bit weight-only MatMulNBits (blocks of 32, symmetric) for every linear incl. the lm_head, "
           "int8 embedding table")
def _int8(src: Path, dest: Path) -> None:
    _nbits(src, dest, 8)


@_register("int4-weight", "4-bit weight-only MatMulNBits (blocks of 32, symmetric) for every linear incl. the lm_head, "
           "int8 embedding table")
def _int4(src: Path, dest: Path) -> None:
    _nbits(src, dest, 4)


@_register("int8-dynamic", "onnxruntime dynamic int8: per-channel int8 weights (MatMul, embedding Gather), "
           "activations quantized per tensor at run time (less accurate on LLMs than int8-weight)")
def _int8_dynamic(src: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..export.onnx import _quiet

    untied = dest.with_name(dest.name + ".untied")
    try:
        _untie_lm_head(src, untied)
        with _quiet():
            quantize_dynamic(str(untied), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gather"])
    finally:
        untied.unlink(missing_ok=True)


def kv_names(num_layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def _wrapper(model):
    import torch
    from transformers import DynamicCache

    n = model.config.num_hidden_layers

    class FlatKV(torch.nn.Module):
        """Flat tensors in and out, so the exporter never sees a cache object."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, past):
            cache = DynamicCache(config=self.model.config)
            for i in range(n):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return FlatKV().eval()


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a HF decoder config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, getattr(config, "num_key_value_heads", config.num_attention_heads), head_dim


def _export_fp32(model, dest: Path) -> None:
    import torch

    from ..export.onnx import _quiet

    n, kv_heads, head_dim = kv_shape(model.config)
    wrapped = _wrapper(model)
    # example past of length 3 and input of length 2: sizes 0/1 would be specialised by torch.export
    ids = torch.tensor([[1, 2]], dtype=torch.long)
    past = tuple(torch.zeros(1, kv_heads, 3, head_dim) for _ in range(2 * n))
    dyn = torch.export.Dim.DYNAMIC
    try:
        with _quiet(), torch.no_grad():
            prog = torch.onnx.export(
                wrapped, (ids, past), None, dynamo=True, opset_version=OPSET,
                input_names=["input_ids", *kv_names(n, "past_key_values")],
                output_names=["logits", *kv_names(n, "present")],
                dynamic_shapes={"input_ids": {1: dyn}, "past": tuple({2: dyn} for _ in range(2 * n))})
            prog.save(str(dest), external_data=False)
    except ModuleNotFoundError as e:
        raise ModelError(f"ONNX export of the causal LM needs {e.name!r}: pip install 'edgedistill[llm]'") from None
    except Exception as e:
        raise ModelError(f"ONNX export of the causal LM failed ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None


def _parity(model, path: Path, vocab: int) -> float:
    """Max abs logit difference ONNX vs eager for a prefill and two decode steps."""
    import torch

    from ..backends.ort import OnnxLM

    lm = OnnxLM(path, max_cache_len=16)
    ids = [int(i) % vocab for i in (1, 5, 9, 3, 7)]
    worst = 0.0
    with torch.no_grad():
        for pos, chunk in ((0, ids[:3]), (3, ids[3:4]), (4, ids[4:5])):
            got = lm.step_np(chunk, pos)
            ref = model(input_ids=torch.tensor([ids[:pos + len(chunk)]]), use_cache=False).logits[0, -1].numpy()
            worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def prepare(model):
    """A float32 eval copy with eager attention and caching on (the original is not changed)."""
    model = copy.deepcopy(model).eval().float()
    for p in model.parameters():
        p.requires_grad_(False)
    model.set_attn_implementation("eager")
    model.config.use_cache = True
    return model


_OLD_NAMES = {"int8": "int8-weight", "int4": "int4-weight"}
"""This module's names before the scheme registries merged."""


def _quantizer(scheme: str) -> LmScheme:
    from ..export.schemes import canonical

    return ONNX_LM_SCHEMES.lookup(_OLD_NAMES.get(scheme, canonical(scheme)))


def quantize_onnx_lm(fp32_path: str | Path, dest: str | Path, scheme: str) -> Path:
    """Apply ``scheme`` to an fp32 file written by :func:`export_onnx_lm`; the write is atomic."""
    entry = _quantizer(scheme)
    fp32_path, dest = Path(fp32_path), Path(dest)
    if not fp32_path.is_file():
        raise ModelError(f"{fp32_path}: fp32 ONNX file not found")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        entry.fn(fp32_path, tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def export_onnx_lm(model, tokenizer, out_dir: str | Path, scheme: str = "fp32", check_tol: float = 5e-3) -> Path:
    """Write ``out_dir/lm-<scheme>.onnx`` (+ ``lm-<scheme>.json`` facts, + the tokenizer if given); returns the .onnx.

    The fp32 graph must match the eager model within ``check_tol`` (max abs
    logit; measured 2e-6 on tiny Llamas, 8e-5 on the 30-layer SmolLM2) or
    nothing is written. ``lm-<scheme>.json`` records the scheme, byte sizes,
    that difference, the KV-cache geometry and ``max_position_embeddings``.
    """
    entry = _quantizer(scheme)
    out_dir = Path(out_dir)
    model = prepare(model)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params * 4 >= PROTOBUF_LIMIT:
        raise ModelError(f"the model has {n_params / 1e9:.2f}B parameters; its fp32 ONNX graph would pass protobuf's "
                         "2 GB single-file limit, which this exporter does not support")
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"lm-{scheme}.onnx"
    with tempfile.TemporaryDirectory(prefix=".onnx-lm-", dir=out_dir) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_fp32(model, fp32)
        diff = _parity(model, fp32, model.config.vocab_size)
        if not np.isfinite(diff) or diff > check_tol:
            raise ModelError(f"{dest}: fp32 ONNX export disagrees with PyTorch (max abs logit diff {diff:.3g} > "
                             f"{check_tol:g}); nothing written")
        quantize_onnx_lm(fp32, dest, entry.name)
        fp32_bytes = fp32.stat().st_size
    layers, kv_heads, head_dim = kv_shape(model.config)
    write_json_atomic(out_dir / f"lm-{scheme}.json", {
        "scheme": scheme, "description": entry.description, "file": dest.name, "bytes": dest.stat().st_size,
        "fp32_bytes": fp32_bytes, "fp32_max_abs_logit_diff": diff, "exporter": "torch.onnx.export(dynamo=True)",
        "opset": OPSET, "num_layers": layers, "num_kv_heads": kv_heads, "head_dim": head_dim,
        "vocab_size": model.config.vocab_size,
        "max_position_embeddings": getattr(model.config, "max_position_embeddings", None)})
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return dest


def _bundle_export(scheme: str):
    def export(model, out: Path, max_cache_len: int) -> Path:
        # The ONNX graph takes any past length; max_cache_len only bounds the bundle's context.
        with tempfile.TemporaryDirectory(prefix=".onnx-lm-", dir=out.parent) as tmp:
            path = export_onnx_lm(model, None, tmp, scheme)
            os.replace(path, out)
        return out

    return export


# The causal-LM implementations of the ONNX schemes (edgedistill.export.schemes names them).
bundle_fp32 = _bundle_export("fp32")
bundle_int8_weight = _bundle_export("int8-weight")
bundle_int4_weight = _bundle_export("int4-weight")
bundle_int8_dynamic = _bundle_export("int8-dynamic")
