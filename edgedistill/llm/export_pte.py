"""ExecuTorch ``.pte`` export of a causal LM with a static KV cache, fp32 or 8da4w, XNNPACK-delegated.

One ``forward(input_ids [1, s], cache_position [s])`` method serves both the
prefill (s tokens) and each decode step (s = 1); the KV cache lives inside the
program as mutable buffers. :mod:`edgedistill.llm.filled_attention` reads only
the cache slots filled so far, so a decode step costs the context used, not
``max_cache_len``: with ExecuTorch's LLM kernels (``custom``, the default) or
with standard ATen ops only (``filled``); ``static``
is HF's static-cache wrapper (every slot, every step), kept for decoders the
filled forward does not know, which fall back to it. Gotchas handled here (see
research/deps.md): the HF wrapper's export must stay ``strict`` (non-strict
fails in lowering), the filled forward's must not (strict export keeps its
``_local_scalar_dense`` as ``aten.item``, which then fails to decompose); the
embedding's ``padding_idx`` must go before int8 embedding quantisation, or
ExecuTorch cannot fuse ``embedding_byte``; the tied output matrix is untied for
8da4w so the embedding (int8) and lm_head (int4) quantise separately.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..errors import ModelError, RecipeError
from ..fileutil import write_bytes_atomic
from .recipe import DEFAULT_ATTENTION

SCHEMES = ("fp32", "8da4w")
"""This exporter's quantization step; the bundle schemes are et-fp32 and et-8da4w (edgedistill.export.schemes)."""


def quantize_8da4w(model, group_size: int = 32):
    """int8 dynamic activations x int4 grouped weights on every Linear; int8 per-row embedding."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    odd = [f"{n} ({m.in_features})" for n, m in model.named_modules()
           if isinstance(m, torch.nn.Linear) and m.in_features % group_size]
    if odd:  # torchao would stop on an assertion deep in its quantizer
        raise ModelError(f"8da4w: int4 groups of {group_size} need input widths divisible by {group_size}; "
                         f"not {', '.join(odd[:3])}")
    emb = model.get_input_embeddings()
    emb.padding_idx = None
    if getattr(model.lm_head, "weight", None) is emb.weight:  # a TailHead has no single matrix to untie
        model.lm_head.weight = torch.nn.Parameter(emb.weight.detach().clone())
        model.config.tie_word_embeddings = False
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              lambda m, fqn: isinstance(m, torch.nn.Embedding))
    quantize_(model, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                           weight_granularity=PerGroup(group_size)))
    return model


def _export_static(model, max_cache_len: int, seq):
    from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM

    wrapper = TorchExportableModuleForDecoderOnlyLM(model, batch_size=1, max_cache_len=max_cache_len)
    return wrapper.export(input_ids=torch.tensor([[1, 2]], dtype=torch.long),
                          cache_position=torch.tensor([0, 1], dtype=torch.long),
                          dynamic_shapes={"input_ids": {1: seq}, "cache_position": {0: seq}})


def _export_filled(model, max_cache_len: int, seq, kernels: str = "aten"):
    from .filled_attention import FilledCacheLM

    # the filled length is read from cache_position (.item()): dynamo must keep it as a symbolic scalar
    with torch._dynamo.config.patch(capture_scalar_outputs=True):
        return torch.export.export(FilledCacheLM(model, max_cache_len, kernels),
                                   (torch.tensor([[1, 2]], dtype=torch.long), torch.tensor([0, 1], dtype=torch.long)),
                                   dynamic_shapes=({1: seq}, {0: seq}), strict=False).run_decompositions({})


def export_pte(model, out: str | Path, scheme: str = "fp32", max_cache_len: int = 256,
               attention: str = DEFAULT_ATTENTION) -> Path:
    """Write ``out`` (.pte); the model is copied, not changed. ``custom`` and ``filled`` fall back to ``static``
    for decoders it does not know (see :func:`edgedistill.llm.filled_attention.unsupported_reason`)."""
    scheme = scheme.removeprefix("et-")  # the canonical scheme names work too
    if scheme not in SCHEMES:
        raise RecipeError(f"[export] key 'scheme': expected one of {SCHEMES}, got {scheme!r}")
    from ..backends import et

    et.require("exporting a causal LM to ExecuTorch", export=True)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from .recipe import check_attention

    attention = effective_attention(model, check_attention(attention, "[export] key 'attention'"))
    if attention == "custom":
        from ..backends.et import load_llm_custom_ops

        load_llm_custom_ops()
    model = copy.deepcopy(model).eval().float()
    for p in model.parameters():
        p.requires_grad_(False)
    model.generation_config.use_cache = True
    model.generation_config.cache_implementation = "static"
    model.config.use_cache = True
    if scheme == "8da4w":
        from torchao.utils import unwrap_tensor_subclass

        quantize_8da4w(model)
        unwrap_tensor_subclass(model)
    seq = torch.export.Dim("seq", min=1, max=max_cache_len - 1)
    with torch.no_grad():
        try:
            ep = (_export_static(model, max_cache_len, seq) if attention == "static" else
                  _export_filled(model, max_cache_len, seq, "llama" if attention == "custom" else "aten"))
        except Exception as e:
            raise ModelError(f"torch.export of the causal LM failed ({type(e).__name__}: {str(e)[:2000]})") from None
        prog = to_edge_transform_and_lower(
            ep, partitioner=[XnnpackPartitioner()],
            compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True),
        ).to_executorch(ExecutorchBackendConfig(
            extract_delegate_segments=True, do_quant_fusion_and_const_prop=True,
            # the filled-cache forward writes its cache with index_put: in place, not a copy of the buffer
            run_reinplace_pass=attention == "filled"))
    return write_bytes_atomic(out, prog.buffer)


def effective_attention(model, attention: str) -> str:
    """The attention :func:`export_pte` gives ``model``: ``static`` for decoders the filled forward does not know."""
    from .filled_attention import unsupported_reason

    return "static" if attention in ("filled", "custom") and unsupported_reason(model) else attention


def bundle_fp32(model, out: Path, max_cache_len: int, attention: str = DEFAULT_ATTENTION) -> Path:
    """The ``et-fp32`` scheme's causal-LM implementation (see edgedistill.export.schemes)."""
    return export_pte(model, out, "fp32", max_cache_len=max_cache_len, attention=attention)


def bundle_8da4w(model, out: Path, max_cache_len: int, attention: str = DEFAULT_ATTENTION) -> Path:
    """The ``et-8da4w`` scheme's causal-LM implementation."""
    return export_pte(model, out, "8da4w", max_cache_len=max_cache_len, attention=attention)
