"""What one inference (or one decoded token) *is*: the input of the ``modelled-v2`` device model.

Everything here is counted from the model's shape and its quantisation scheme, never timed on the
host, so the same model gives the same workload on every machine:

* ``macs``: multiply-accumulates per arithmetic class (``fp32``, ``fp16``, ``int8``, ``int8-grouped``:
  int4-weight schemes such as 8da4w run int8 x int8 kernels after unpacking each group of 32 weights and
  rescaling its partial sums in float, a class of its own because that extra work shares the SIMD pipes);
* ``elementwise``: scalar operations outside the matrix products (norms, softmax, activations, RoPE,
  residual adds, dynamic quantisation of activations);
* ``ops``: operator launches per inference (each costs the runtime's dispatch overhead);
* ``weight_bytes``: weight bytes streamed per inference (an embedding table contributes the rows it
  looks up, not the table); ``kv_bytes``: KV cache read per decoded token;
* ``activations``: the largest per-layer activations (what may spill out of the last-level cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Precision:
    """How a scheme stores and computes: bytes per parameter and the MAC class of the linears."""
    name: str
    mac_class: str
    linear_bytes: float
    embedding_bytes: float
    head_bytes: float
    kv_bytes: float = 4.0
    act_bytes: float = 4.0
    head_class: str | None = None
    """MAC class of the LM head when it differs from the other linears (e.g. an 8da8w output layer)."""

    @property
    def quantises_activations(self) -> bool:
        return self.mac_class in INT8_CLASSES


# int4 weights carry one 16-bit scale per group of 32 (0.5 + 2/32 bytes); int8 per-channel scales are
# negligible. bf16 is stored in 2 bytes but counted at the fp32 rate (ASSUMED; the one bf16 model here, the
# ExecuTorch Llama anchor, is exported without the XNNPACK delegate and runs ExecuTorch's own CPU kernels;
# see docs/device-model.md).
INT4_G32 = 0.5 + 2 / 32
INT8_CLASSES = ("int8", "int8-grouped")
PRECISIONS = {p.name: p for p in (
    Precision("fp32", "fp32", 4, 4, 4),
    Precision("fp16", "fp16", 2, 2, 2, kv_bytes=2, act_bytes=2),
    Precision("bf16", "fp32", 2, 2, 2, kv_bytes=4),
    Precision("int8", "int8", 1, 4, 1),
    Precision("int8-emb8", "int8", 1, 1, 1),
    Precision("8da4w", "int8-grouped", INT4_G32, 1, INT4_G32),
)}


# Storage of each built-in scheme (export/schemes.py): the linears' bytes per weight and compute class,
# and the embedding tables'. Weight-only schemes store small weights but compute in fp32.
SCHEME_PRECISION = {
    "fp32": PRECISIONS["fp32"], "et-fp32": PRECISIONS["fp32"], "eager-fp32": PRECISIONS["fp32"],
    "fp16": PRECISIONS["fp16"],
    "int8-dynamic": Precision("int8-dynamic", "int8", 1, 1, 1),
    "int8-static": Precision("int8-static", "int8", 1, 1, 1),
    "int8-weight": Precision("int8-weight", "fp32", 1 + 2 / 32, 1, 1 + 2 / 32),
    "int4-weight": Precision("int4-weight", "fp32", INT4_G32, 1, INT4_G32),
    "et-int8": PRECISIONS["int8-emb8"],
    "et-8da4w": PRECISIONS["8da4w"],
    "et-int8-static": PRECISIONS["int8"],
}


def precision_for_scheme(scheme: str) -> Precision:
    """The storage/compute record of a scheme name; an unknown name counts as fp32 (nothing assumed faster)."""
    from ..export.schemes import SCHEMES, canonical

    name = canonical(scheme)
    if name in SCHEME_PRECISION:
        return SCHEME_PRECISION[name]
    s = SCHEMES.get(name)
    return PRECISIONS["int8"] if s is not None and s.compute == "int8" else PRECISIONS["fp32"]


@dataclass
class Workload:
    macs: dict[str, float]
    elementwise: float
    ops: int
    weight_bytes: float
    kv_bytes: float = 0.0
    activations: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return {"macs": self.macs, "elementwise": self.elementwise, "ops": self.ops,
                "weight_bytes": self.weight_bytes, "kv_bytes": self.kv_bytes, "activations": self.activations,
                "note": self.note}


# Operator launches per transformer layer in the exported graphs (XNNPACK / ORT after fusion):
# encoder: 6 linears (q, k, v, o, ffn up, ffn down), 2 attention matmuls, softmax, GELU, 2 LayerNorms,
# 2 residual adds, 2 head reshapes, 2 (de)quantise = 20; decoder: 7 linears, 2 RMSNorms, 2 RoPE,
# 2 cache updates, SDPA, SiLU, gate mul, 2 residual adds = 20.
ENCODER_OPS_PER_LAYER = 20
DECODER_OPS_PER_LAYER = 20


def _add(macs: dict, cls: str, n: float) -> None:
    macs[cls] = macs.get(cls, 0.0) + float(n)


def encoder_workload(shape, batch: int, seq: int, precision: Precision) -> Workload:
    """One encoder forward of (batch, seq) tokens; ``shape`` is a :class:`~.macs.EncoderShape`."""
    h, f, n = shape.hidden, shape.ffn, shape.layers
    tokens = batch * seq
    linear_params = n * (4 * h * h + 2 * h * f)
    macs: dict[str, float] = {}
    _add(macs, precision.mac_class, tokens * linear_params)
    # onnxruntime and XNNPACK keep the attention products in float even in int8 schemes.
    _add(macs, "fp16" if precision.mac_class == "fp16" else "fp32", 2 * batch * seq * seq * h * n)
    # per token and layer: 2 LayerNorms (~8 ops/element), GELU (~8/elem of ffn), softmax (~5/score),
    # 2 residual adds; int8 schemes also quantise each linear's input (~3 ops/element).
    quant = 3 * (4 * h + f) if precision.quantises_activations else 0
    elementwise = tokens * n * (16 * h + 8 * f + 2 * h + quant) + 5 * batch * shape.heads * seq * seq * n
    a = precision.act_bytes
    activations = {"hidden": tokens * h * a, "qkv": tokens * 3 * h * a,
                   "scores": batch * shape.heads * seq * seq * 4, "ffn": tokens * f * a}
    weight_bytes = linear_params * precision.linear_bytes + tokens * h * precision.embedding_bytes
    return Workload(macs, float(elementwise), n * ENCODER_OPS_PER_LAYER + 4, float(weight_bytes),
                    activations=activations, note=f"encoder {n}x{h}, batch {batch} x {seq} tokens, {precision.name}")


@dataclass(frozen=True)
class LMShape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_info(cls, info: dict) -> LMShape:
        """From :func:`edgedistill.llm.bundle.model_info`'s dict."""
        return cls(info["layers"], info["hidden_size"], info["intermediate_size"], info["num_attention_heads"],
                   info["num_key_value_heads"], info["head_dim"], info["vocab_size"])

    @property
    def linear_params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.layers * (self.hidden * q + 2 * self.hidden * kv + q * self.hidden + 3 * self.hidden * self.ffn)

    def kv_cache_bytes(self, context: int, precision: Precision) -> float:
        return 2.0 * self.layers * context * self.kv_heads * self.head_dim * precision.kv_bytes


def _lm_elementwise(s: LMShape, tokens: int, context: int, precision: Precision) -> float:
    q = s.heads * s.head_dim
    per_token = s.layers * (2 * 6 * s.hidden + 2 * 3 * q + 4 * s.ffn + 2 * s.hidden + 5 * s.heads * context)
    if precision.quantises_activations:
        per_token += s.layers * 3 * (4 * s.hidden + s.ffn)
    return float(tokens * per_token)


def decode_workload(s: LMShape, context: int, precision: Precision) -> Workload:
    """One decoded token with ``context`` tokens in the cache: every weight streamed once, the cache read once."""
    q = s.heads * s.head_dim
    macs: dict[str, float] = {}
    _add(macs, precision.mac_class, s.linear_params)
    _add(macs, precision.head_class or precision.mac_class, s.vocab * s.hidden)
    _add(macs, "fp32", 2 * context * q * s.layers)
    weights = s.linear_params * precision.linear_bytes + s.vocab * s.hidden * precision.head_bytes
    weights += s.hidden * precision.embedding_bytes
    return Workload(macs, _lm_elementwise(s, 1, context, precision), s.layers * DECODER_OPS_PER_LAYER + 3,
                    float(weights), kv_bytes=s.kv_cache_bytes(context, precision),
                    activations={"logits": s.vocab * 4.0},
                    note=f"decode step at context {context}, {precision.name}")


def prefill_workload(s: LMShape, prompt: int, precision: Precision) -> Workload:
    """The whole prompt in one pass: linears for every prompt token, logits for the last one only."""
    q = s.heads * s.head_dim
    macs: dict[str, float] = {}
    _add(macs, precision.mac_class, prompt * s.linear_params)
    _add(macs, precision.head_class or precision.mac_class, s.vocab * s.hidden)
    _add(macs, "fp32", prompt * prompt * q * s.layers)  # causal: half of 2 x P^2 x q per layer
    weights = s.linear_params * precision.linear_bytes + s.vocab * s.hidden * precision.head_bytes
    weights += prompt * s.hidden * precision.embedding_bytes
    a = precision.act_bytes
    return Workload(macs, _lm_elementwise(s, prompt, prompt // 2, precision), s.layers * DECODER_OPS_PER_LAYER + 3,
                    float(weights), kv_bytes=s.kv_cache_bytes(prompt, precision),
                    activations={"hidden": prompt * s.hidden * a, "ffn": prompt * s.ffn * a * 2},
                    note=f"prefill of {prompt} tokens, {precision.name}")
