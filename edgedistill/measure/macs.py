"""Parameter and multiply-accumulate counts of a BERT-style encoder, per layer class.

Counted analytically from the model config for one inference of shape
(batch, seq): exact for the matrix products, which are all but a sliver of
the work. Linear layers run in the quantisation scheme's arithmetic (int8 for
int8 schemes); the attention products (scores and context) stay fp32 in
onnxruntime's quantised attention, so they are counted as fp32.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    vocab: int
    hidden: int
    layers: int
    ffn: int
    heads: int
    positions: int
    type_vocab: int = 0

    @classmethod
    def from_config(cls, cfg) -> EncoderShape:
        get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
        return cls(vocab=get("vocab_size"), hidden=get("hidden_size"), layers=get("num_hidden_layers"),
                   ffn=get("intermediate_size"), heads=get("num_attention_heads"),
                   positions=get("max_position_embeddings"), type_vocab=get("type_vocab_size", 0) or 0)


def linear_class(scheme: str) -> str:
    """The scheme record's ``compute`` (int8 or fp32; fp16 is counted as fp32); fp32 for an unknown name."""
    from ..export.schemes import SCHEMES, canonical

    s = SCHEMES.get(canonical(scheme))
    return "int8" if s is not None and s.compute == "int8" else "fp32"


def count(shape: EncoderShape, batch: int, seq: int, scheme: str = "fp32") -> dict:
    h, f, n_layers = shape.hidden, shape.ffn, shape.layers
    tokens = batch * seq
    proj = tokens * 4 * h * h * n_layers  # Q, K, V and output projections
    ffn = tokens * 2 * h * f * n_layers
    attn = 2 * batch * seq * seq * h * n_layers  # scores and context, summed over heads
    params = {
        "embeddings": (shape.vocab + shape.positions + shape.type_vocab) * h + 2 * h,
        "attention": n_layers * (4 * h * h + 4 * h + 2 * h),
        "ffn": n_layers * (2 * h * f + f + h + 2 * h),
    }
    params["total"] = sum(params.values())
    lin = linear_class(scheme)
    macs = {"fp32": attn}
    macs[lin] = macs.get(lin, 0) + proj + ffn
    return {
        "params": params,
        "macs": macs,
        "macs_by_layer_class": {"attention_projections": proj, "attention_products": attn, "ffn": ffn},
        "activation_bytes": activation_bytes(shape, batch, seq),
    }


def activation_bytes(shape: EncoderShape, batch: int, seq: int) -> dict:
    """fp32 sizes of the largest per-layer activations (what may spill out of the cache)."""
    return {
        "hidden": batch * seq * shape.hidden * 4,
        "qkv": batch * seq * 3 * shape.hidden * 4,
        "scores": batch * shape.heads * seq * seq * 4,
        "ffn": batch * seq * shape.ffn * 4,
    }
