"""An export-friendly decoder forward whose attention reads only the filled KV-cache positions.

HF's static cache (``transformers.integrations.executorch``) attends over all
``max_cache_len`` slots at every step and builds a ``[s, max_cache_len]`` mask;
in an ExecuTorch program that cost is paid on the portable kernels whatever the
context length, which made the teacher's 8da4w ``.pte`` decode at ~20 tok/s.
:class:`FilledCacheLM` keeps the same program contract, ``forward(input_ids
[1, s], cache_position [s]) -> logits [1, s, vocab]`` with the cache as
mutable buffers, but:

* writes the new keys/values with ``index_put_`` into caches laid out for the
  attention's matmuls (keys ``[kv_heads, head_dim, max_cache_len]``, values
  ``[kv_heads, max_cache_len, head_dim]``), which ExecuTorch's re-inplace pass
  turns into in-place writes (no copy of the whole cache per layer);
* attends to ``cache[..., :cache_position[-1] + 1]`` only (a data-dependent
  length, bounded for export with ``torch._check``), so decode costs the filled
  length, and the filled prefix feeds ``bmm`` without a permute;
* runs each KV head's group of query heads as the rows of one ``bmm`` (grouped-
  query attention without ``repeat_kv`` copies or broadcasts);
* keeps XNNPACK's partitions whole: ``-1`` token dimensions in reshapes, no
  batch indexing, ``rotate_half`` as a matrix (see ``_attention``).

With ``kernels="aten"`` only standard ATen ops are used, so the program runs on
any ExecuTorch runtime (the exporter's ``filled`` attention);
``kernels="llama"`` (its ``custom`` attention, the default) calls ExecuTorch's ``llama::update_cache`` / ``custom_sdpa``
instead (see :data:`KERNELS`). It reuses the HF model's own modules
(embedding, projections, norms, MLP, rotary embedding, head), so quantising the
HF model first (8da4w) carries over unchanged.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

FAMILIES = ("llama", "qwen2", "mistral")
"""Decoders whose layer is exactly norm -> attention (+ residual) -> norm -> MLP (+ residual), plain RoPE."""
KERNELS = ("aten", "llama")
"""``aten``: standard ATen ops only (any ExecuTorch runtime, the native C++ runner included); ``llama``:
ExecuTorch's ``llama::update_cache`` / ``llama::custom_sdpa`` kernels (read the cache in place; need a runtime that
has them: the Python pybindings after ``executorch.extension.llm.custom_ops``, ExecuTorch's Android/iOS LLM
runtimes, the native runner's own in ``native/src/llm_kernels.cpp``)."""
_LAYER_PARTS = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
_ATTN_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot take this forward (None when it can): a Llama-style decoder is needed."""
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return f"{type(model).__name__} is not a Llama-style decoder (model.embed_tokens/layers/norm/rotary_emb)"
    cfg = model.config
    if getattr(cfg, "model_type", None) not in FAMILIES:
        return f"model type {getattr(cfg, 'model_type', None)!r} (this forward knows {', '.join(FAMILIES)})"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    for layer in inner.layers:
        if not all(hasattr(layer, p) for p in _LAYER_PARTS) or not all(hasattr(layer.self_attn, p)
                                                                          for p in _ATTN_PARTS):
            return f"decoder layer {type(layer).__name__} is not Llama-style"
        if hasattr(layer.self_attn, "q_norm") or hasattr(layer.self_attn, "k_norm"):
            return "per-head q/k norms"
    if getattr(cfg, "partial_rotary_factor", 1.0) != 1.0:
        return "partial rotary embedding"
    return None


def _rotate_half_matrix(head_dim: int) -> torch.Tensor:
    """``R`` with ``x @ R == cat(-x[..., h:], x[..., :h])`` (HF's ``rotate_half``), ``h = head_dim // 2``."""
    h = head_dim // 2
    r = torch.zeros(head_dim, head_dim)
    idx = torch.arange(h)
    r[idx + h, idx] = -1.0
    r[idx, idx + h] = 1.0
    return r


def _same_rope(family, ours, heads: int, kv_heads: int, head_dim: int) -> bool:
    """Whether our rotation reproduces the family's helper on a random probe (else the family's is used)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, heads, head_dim, generator=g), torch.randn(3, kv_heads, head_dim, generator=g)
    cos, sin = torch.randn(3, head_dim, generator=g), torch.randn(3, head_dim, generator=g)
    try:
        want = family(q, k, cos, sin, unsqueeze_dim=1)
    except (TypeError, RuntimeError):
        return False
    got = ours(q, k, cos, sin, unsqueeze_dim=1)
    return all(torch.allclose(a, b, atol=1e-5) for a, b in zip(want, got, strict=True))


class FilledCacheLM(nn.Module):
    """``forward(input_ids [1, s], cache_position [s]) -> logits [1, s, vocab]``; KV cache in buffers."""

    def __init__(self, model, max_cache_len: int, kernels: str = "aten"):
        super().__init__()
        if kernels not in KERNELS:
            raise ValueError(f"kernels: expected one of {KERNELS}, got {kernels!r}")
        self.kernels = kernels
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(reason)
        self.lm = model
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.max_cache_len = max_cache_len
        attn0 = model.model.layers[0].self_attn
        self.scaling = getattr(attn0, "scaling", self.head_dim ** -0.5)
        # rotate_half as a matrix where it reproduces the family's own rotary helper (checked on a probe); a family
        # that rotates otherwise keeps its helper, at the cost of two portable slices per layer
        family_rope = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
        self.register_buffer("rotate_half_t", _rotate_half_matrix(self.head_dim).T.contiguous(), persistent=False)
        self._rope = self._linear_rope if _same_rope(family_rope, self._linear_rope, self.heads, self.kv_heads,
                                                      self.head_dim) else family_rope
        self.n_layers = len(model.model.layers)
        dtype = next(model.parameters()).dtype
        if not dtype.is_floating_point:  # quantised weights: the activations stay fp32
            dtype = torch.float32
        # keys stored transposed ([kv_heads, head_dim, max_len]) and values [kv_heads, max_len, head_dim]: the
        # filled prefix of each is then a plain slice that feeds bmm as is, batched over KV heads; a [max_len,
        # kv_heads, head_dim] layout needed a permute_copy of the whole filled cache per layer and step (the
        # portable kernel's per-element indexing was ~40% of a decode step, measured with ETDump)
        for i in range(self.n_layers):
            if kernels == "llama":  # the layout ExecuTorch's update_cache / custom_sdpa take: [1, max_len, heads, dim]
                k_shape = v_shape = (1, max_cache_len, self.kv_heads, self.head_dim)
            else:
                k_shape, v_shape = (self.kv_heads, self.head_dim, max_cache_len), (self.kv_heads, max_cache_len,
                                                                                  self.head_dim)
            self.register_buffer(f"k_cache_{i}", torch.zeros(k_shape, dtype=dtype), persistent=False)
            self.register_buffer(f"v_cache_{i}", torch.zeros(v_shape, dtype=dtype), persistent=False)

    def _attention(self, i: int, attn, x, cos, sin, cache_position, start, end, bias):
        # Shapes say -1 for the token dimension wherever XNNPACK should take the op: its partitioner rejects a
        # reshape to a symbolic size, and each op left outside splits the layer into one more delegate call
        # (each re-shaped per step). Batch indexing (q[0]) and rotate_half's slices stay outside too, hence the
        # [tokens, heads, head_dim] layout from the start and the rotation as a matrix (see _linear_rope).
        q = attn.q_proj(x).view(-1, self.heads, self.head_dim)
        k = attn.k_proj(x).view(-1, self.kv_heads, self.head_dim)
        v = attn.v_proj(x).view(-1, self.kv_heads, self.head_dim)
        q, k = self._rope(q, k, cos, sin, unsqueeze_dim=1)
        k_cache, v_cache = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
        if self.kernels == "llama":
            # in-place cache writes and a causal attention that reads the cache where it lies (no slice copies)
            torch.ops.llama.update_cache(k.unsqueeze(0), k_cache, start)
            torch.ops.llama.update_cache(v.unsqueeze(0), v_cache, start)
            out = torch.ops.llama.custom_sdpa(q.unsqueeze(0), k_cache, v_cache, start, None, 0.0, True, self.scaling)
            return attn.o_proj(out.view(1, -1, self.heads * self.head_dim))
        k_cache[:, :, cache_position] = k.permute(1, 2, 0)  # index_put_ of the new columns only
        v_cache[:, cache_position] = v.transpose(0, 1)
        keys = k_cache[:, :, :end]  # [kv_heads, head_dim, end]
        values = v_cache[:, :end]  # [kv_heads, end, head_dim]
        group = self.heads // self.kv_heads
        # query head h reads KV head h // group (HF's repeat_kv order): the group's queries are rows of one bmm
        # per KV head, so K/V are neither repeated nor broadcast (an expand_copy per layer and step otherwise)
        q = (q * self.scaling).view(-1, self.kv_heads, group, self.head_dim).permute(1, 2, 0, 3)
        scores = torch.bmm(q.reshape(self.kv_heads, -1, self.head_dim), keys)  # [kv_heads, group * s, end]
        scores = scores.view(self.kv_heads, group, -1, scores.shape[-1]) + bias
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype).view(self.kv_heads, -1, scores.shape[-1])
        out = torch.bmm(probs, values).view(self.kv_heads, group, -1, self.head_dim).permute(2, 0, 1, 3)
        return attn.o_proj(out.contiguous().view(1, -1, self.heads * self.head_dim))

    def _linear_rope(self, q, k, cos, sin, unsqueeze_dim=1):
        """HF's ``apply_rotary_pos_emb`` with ``rotate_half`` as a constant matrix: rotate_half's two slices of a
        dynamic-length tensor are not XNNPACK ops, a linear layer is (and its result is exact: one term per entry)."""
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        rot = self.rotate_half_t.to(q.dtype)
        return (q * cos + nn.functional.linear(q, rot) * sin, k * cos + nn.functional.linear(k, rot) * sin)

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        inner = self.lm.model
        last = torch.ops.aten._local_scalar_dense(cache_position[-1])  # not .item(): that fails to decompose
        torch._check(last >= 0)
        torch._check(last < self.max_cache_len)
        end = last + 1
        start = None
        if self.kernels == "llama":  # positions are consecutive: the first one and the count say where to write
            start = torch.ops.aten._local_scalar_dense(cache_position[0])
            torch._check_is_size(start)
            torch._check(start < self.max_cache_len)
        h = inner.embed_tokens(input_ids)
        cos, sin = inner.rotary_emb(h, cache_position.unsqueeze(0))
        cos, sin = cos.view(-1, cos.shape[-1]), sin.view(-1, sin.shape[-1])  # [s, rotary dim]: q, k have no batch
        # position p may read cache slots 0..p (all filled slots at decode: the mask is all true then)
        bias = None
        if self.kernels == "aten":
            allowed = torch.arange(end, dtype=cache_position.dtype).unsqueeze(0) <= cache_position.unsqueeze(1)
            bias = torch.zeros(allowed.shape, dtype=h.dtype).masked_fill(~allowed, float("-inf"))  # once per call
        for i, layer in enumerate(inner.layers):
            h = h + self._attention(i, layer.self_attn, layer.input_layernorm(h), cos, sin, cache_position, start,
                                    end, bias)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm.lm_head(inner.norm(h))
