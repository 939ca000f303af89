"""PyTorch encoder -> ExecuTorch ``.pte`` lowered to XNNPACK, in four schemes.

The program has the ONNX export's I/O (token states and the pooled sentence
embedding) but a fixed shape: batch 1, ``max_length`` tokens. XNNPACK cannot
lower a reshape with a symbolic size, and BERT's head split is one, so a
dynamic-length program leaves every attention block half on portable kernels;
a fixed shape keeps nearly every operator delegated (see ``delegation``).

The graph is also rewritten for XNNPACK, with results equal to the HF forward:
the padding mask goes in as an additive 4-D mask (transformers' mask builder
and SDPA's masking are boolean ops XNNPACK lacks), LayerNorm is spelt with
matmul/rsqrt (XNNPACK has no layer norm) and pooling with batched matmuls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import et
from ..errors import ModelError
from ..fileutil import write_bytes_atomic
from ..models.loading import load_encoder
from .onnx import _quiet, input_names_for

ATTENTION = "edgedistill_xnnpack"
MASK_FILL = -1e4  # exp(-1e4) is exactly 0 in fp32, and unlike finfo.min it leaves int8 ranges usable


@dataclass
class EtOptions:
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 128
    calib_texts: Sequence[str] = field(default_factory=list)
    """Training sentences for static calibration (et-int8-static only)."""
    task: str = "embedding"
    """``classification``: the program returns logits (see :mod:`edgedistill.tasks.classification`)."""


def _layer_norm_module():
    import torch

    class XnnLayerNorm(torch.nn.Module):
        """LayerNorm over the last axis from ops XNNPACK lowers (mean as a matmul with 1/H)."""

        def __init__(self, ln: torch.nn.LayerNorm):
            super().__init__()
            h = ln.normalized_shape[-1]
            self.weight, self.bias, self.eps = ln.weight, ln.bias, ln.eps
            self.register_buffer("avg", torch.full((h, 1), 1.0 / h), persistent=False)

        def forward(self, x):
            d = x - torch.matmul(x, self.avg)
            var = torch.matmul(d * d, self.avg)
            return d * torch.rsqrt(var + self.eps) * self.weight + self.bias

    return XnnLayerNorm


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention on 3-D batched matmuls: ``torch.matmul`` on 4-D tensors exports as
    expand + bmm, and XNNPACK leaves the expands (and a subgraph boundary each) to portable kernels."""
    import torch

    b, h, s, d = query.shape
    t = key.shape[2]
    scores = torch.bmm(query.reshape(b * h, s, d), key.reshape(b * h, t, d).transpose(1, 2))
    scores = scores.view(b, h, s, t) * (d ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1).view(b * h, s, t)
    out = torch.bmm(probs, value.reshape(b * h, t, d)).view(b, h, s, d)
    return out.transpose(1, 2).contiguous(), None


def _use_attention(model) -> None:
    from transformers import AttentionInterface

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, _attention)
    model.set_attn_implementation(ATTENTION)


def _swap_layer_norms(model) -> int:
    import torch

    cls = _layer_norm_module()
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, torch.nn.LayerNorm)]
    for parent, name, child in swaps:
        setattr(parent, name, cls(child))
    return len(swaps)


def _wrapper(model, input_names: list[str], pooling: str, normalize: bool):
    import torch

    class EtEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            kw = dict(zip(input_names, args, strict=True))
            mask = kw["attention_mask"].to(torch.float32)
            b, s = mask.shape
            kw["attention_mask"] = ((1.0 - mask) * MASK_FILL).view(b, 1, 1, s)
            hidden = self.model(**kw).last_hidden_state
            if pooling == "cls":
                emb = hidden[:, 0]
            else:
                m = mask.view(b, 1, s)
                count = torch.bmm(m, mask.view(b, s, 1)).view(b, 1)  # mask is 0/1, so m.m = sum(m)
                emb = torch.bmm(m, hidden).view(b, -1) / torch.clamp(count, min=1e-9)
            if normalize:
                sq = torch.bmm(emb.view(b, 1, -1), emb.view(b, -1, 1)).view(b, 1)
                emb = emb * torch.rsqrt(torch.clamp(sq, min=1e-24))  # = F.normalize(eps=1e-12)
            return hidden, emb

    return EtEncoder().eval()


def require_executorch() -> None:
    et.require("exporting an et-* scheme", export=True)


def prepare(model_dir: Path, opts: EtOptions):
    """(wrapped module, tokenizer, input names, example args at the program's fixed shape)."""
    from ..tasks import get_task

    return get_task(opts.task).et_prepare(model_dir, opts)


def prepare_encoder(model_dir: Path, opts: EtOptions):
    """:func:`prepare` for a sentence encoder: token states and the pooled (normalised) embedding."""
    require_executorch()
    model, tok = load_encoder(model_dir, attn_implementation="eager")
    names = input_names_for(tok)
    _use_attention(model)
    _swap_layer_norms(model)
    feats = tok(["edge"], padding="max_length", truncation=True, max_length=opts.max_length, return_tensors="pt")
    return _wrapper(model, names, opts.pooling, opts.normalize), tok, names, tuple(feats[n] for n in names)


def _op_name(target) -> str:
    text = str(target)  # EdgeOpOverload prints as "<EdgeOpOverload: aten.x.default>: schema = ..."
    return text.split(": ", 1)[1].split(">", 1)[0] if text.startswith("<EdgeOpOverload") else text


def delegation(edge_program) -> dict:
    """How many operators XNNPACK runs vs the portable kernels (counted on the lowered edge graph)."""
    import operator

    gm = edge_program.graph_module
    delegated, portable = 0, Counter()
    for node in gm.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            inner = getattr(gm, node.name).original_module.graph.nodes
            delegated += sum(1 for n in inner if n.op == "call_function" and n.target is not operator.getitem)
        elif node.op == "call_function" and node.target is not operator.getitem \
                and "executorch_call_delegate" not in str(node.target):
            portable[_op_name(node.target)] += 1
    total = delegated + sum(portable.values())
    return {"xnnpack_delegated_share": round(delegated / total, 4) if total else 0.0, "delegated_ops": delegated,
            "portable_ops": dict(portable.most_common()), "delegate_subgraphs": sum(
                1 for n in gm.graph.nodes if n.op == "get_attr" and n.name.startswith("lowered_module"))}


def lower(exported, dest: Path, quantized_embeddings: bool = False) -> dict:
    """XNNPACK lowering and serialisation of an ``ExportedProgram`` to ``dest`` (atomically)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    # torchao's int8 embedding needs IR validity off and quant fusion on, or lowering stops on
    # "Missing out variants: {'torchao::dequantize_affine'}" (deps.md).
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=not quantized_embeddings,
                                                                        _skip_dim_order=True))
    info = delegation(edge.exported_program())
    prog = edge.to_executorch(ExecutorchBackendConfig(extract_delegate_segments=True,
                                                      do_quant_fusion_and_const_prop=quantized_embeddings))
    write_bytes_atomic(dest, prog.buffer)
    return info


def _export(wrapped, args):
    import torch

    with torch.no_grad():
        return torch.export.export(wrapped, args)


def _torchao(wrapped, linear_bits: int) -> None:
    """int8 embeddings (per row) + int8-activation / int``linear_bits`` weight linears, in place."""
    import torch
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.utils import unwrap_tensor_subclass

    for m in wrapped.modules():
        if isinstance(m, torch.nn.Embedding):
            # padding_idx only shapes gradients, but it blocks the embedding_byte fusion (deps.md)
            m.padding_idx = None
    quantize_(wrapped, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              lambda m, fqn: isinstance(m, torch.nn.Embedding))
    cfg = (Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
           if linear_bits == 8 else
           Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))
    quantize_(wrapped, cfg)
    unwrap_tensor_subclass(wrapped)


def _export_torchao(model_dir: Path, dest: Path, opts: EtOptions, linear_bits: int) -> dict:
    wrapped, _, _, args = prepare(model_dir, opts)
    with _quiet():
        _torchao(wrapped, linear_bits)
        return lower(_export(wrapped, args), dest, quantized_embeddings=True)


def _safe_xnnpack_quantizer():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class SafeXNNPACKQuantizer(XNNPACKQuantizer):
        # The stock transform turns scalar operands into float32 buffers, including integer
        # index arithmetic, which breaks transformers' BERT ("tensors used as indices must be long").
        def transform_for_annotation(self, model):
            return model

    return SafeXNNPACKQuantizer()


def et_fp32(model_dir: Path, dest: Path, opts: EtOptions) -> dict:
    wrapped, _, _, args = prepare(model_dir, opts)
    with _quiet():
        return lower(_export(wrapped, args), dest)


def et_int8(model_dir: Path, dest: Path, opts: EtOptions) -> dict:
    return _export_torchao(model_dir, dest, opts, 8)


def et_8da4w(model_dir: Path, dest: Path, opts: EtOptions) -> dict:
    return _export_torchao(model_dir, dest, opts, 4)


def et_int8_static(model_dir: Path, dest: Path, opts: EtOptions) -> dict:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not opts.calib_texts:
        raise ModelError("et-int8-static needs calibration sentences (the recipe's training split is empty)")
    wrapped, tok, names, args = prepare(model_dir, opts)
    # Linears only: annotating every add would put the additive padding mask (0 / -1e4) and the
    # attention scores it is added to on one int8 scale, which wipes out the scores.
    quantizer = _safe_xnnpack_quantizer().set_module_type(torch.nn.Linear,
                                                          get_symmetric_quantization_config(is_per_channel=True))
    with _quiet(), torch.no_grad():
        gm = prepare_pt2e(torch.export.export(wrapped, args).module(), quantizer)
        for text in opts.calib_texts:
            feats = tok([text], padding="max_length", truncation=True, max_length=opts.max_length,
                        return_tensors="pt")
            gm(*(feats[n] for n in names))
        gm = convert_pt2e(gm)
        return lower(torch.export.export(gm, args), dest)
