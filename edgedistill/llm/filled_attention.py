"""An export-friendly decoder forward whose attention reads only the filled KV-cache positions.

HF's static cache (``transformers.integrations.executorch``) attends over all
``max_cache_len`` slots at every step and builds a ``[s, max_cache_len]`` mask;
in an ExecuTorch program that cost is paid on the portable kernels whatever the
context length, which made the teacher's 8da4w ``.pte`` decode at ~20 tok/s.
:class:`FilledCacheLM` keeps the same program contract, ``forward(input_ids
[1, s], cache_position [s]) -> logits [1, s, vocab]`` with the cache as
mutable buffers, but:

* writes the new keys/values with ``index_put_`` on a ``[max_cache_len, kv_heads,
  head_dim]`` buffer, which ExecuTorch's re-inplace pass turns into an in-place
  write (no copy of the whole cache per layer);
* attends to ``cache[:cache_position[-1] + 1]`` only (a data-dependent length,
  bounded for export with ``torch._check``), so decode costs the filled length;
* groups the query heads over their shared KV head instead of repeating K/V
  (grouped-query attention without ``repeat_kv`` copies).

Only standard ATen ops are used, so the program runs on any ExecuTorch runtime,
the native C++ runner included (ExecuTorch's ``llama::custom_sdpa`` kernels
ship only in a libtorch-linked library). It reuses the HF model's own modules
(embedding, projections, norms, MLP, rotary embedding, head), so quantising the
HF model first (8da4w) carries over unchanged.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

FAMILIES = ("llama", "qwen2", "mistral")
"""Decoders whose layer is exactly norm -> attention (+ residual) -> norm -> MLP (+ residual), plain RoPE."""
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
    return None


class FilledCacheLM(nn.Module):
    """``forward(input_ids [1, s], cache_position [s]) -> logits [1, s, vocab]``; KV cache in buffers."""

    def __init__(self, model, max_cache_len: int):
        super().__init__()
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
        # the model family's own rotary helper: families differ in how they rotate (e.g. partial rotary)
        self._rope = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
        self.n_layers = len(model.model.layers)
        dtype = next(model.parameters()).dtype
        if not dtype.is_floating_point:  # quantised weights: the activations stay fp32
            dtype = torch.float32
        for i in range(self.n_layers):
            for kv in ("k", "v"):
                self.register_buffer(f"{kv}_cache_{i}", torch.zeros(max_cache_len, self.kv_heads, self.head_dim,
                                                                    dtype=dtype), persistent=False)

    def _attention(self, i: int, attn, x, cos, sin, cache_position, end, allowed):
        s = x.shape[1]
        q = attn.q_proj(x).view(1, s, self.heads, self.head_dim)
        k = attn.k_proj(x).view(1, s, self.kv_heads, self.head_dim)
        v = attn.v_proj(x).view(1, s, self.kv_heads, self.head_dim)
        q, k = self._rope(q, k, cos, sin, unsqueeze_dim=2)  # [1, s, heads, head_dim] layout throughout
        k_cache, v_cache = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
        k_cache.index_put_((cache_position,), k[0])
        v_cache.index_put_((cache_position,), v[0])
        keys = k_cache[:end].permute(1, 2, 0).unsqueeze(1)  # [kv_heads, 1, head_dim, end]
        values = v_cache[:end].transpose(0, 1).unsqueeze(1)  # [kv_heads, 1, end, head_dim]
        group = self.heads // self.kv_heads
        # query head h reads KV head h // group (HF's repeat_kv order): broadcast over the group, no K/V copies
        q = q[0].view(s, self.kv_heads, group, self.head_dim).permute(1, 2, 0, 3)  # [kv_heads, group, s, hd]
        scores = torch.matmul(q, keys) * self.scaling  # [kv_heads, group, s, end]
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, values).permute(2, 0, 1, 3).contiguous()  # [s, kv_heads, group, head_dim]
        return attn.o_proj(out.view(1, s, self.heads * self.head_dim))

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        inner = self.lm.model
        last = torch.ops.aten._local_scalar_dense(cache_position[-1])  # not .item(): that fails to decompose
        torch._check(last >= 0)
        torch._check(last < self.max_cache_len)
        end = last + 1
        h = inner.embed_tokens(input_ids)
        cos, sin = inner.rotary_emb(h, cache_position.unsqueeze(0))
        # position p may read cache slots 0..p (all filled slots at decode: the mask is all true then)
        allowed = torch.arange(end, dtype=cache_position.dtype).unsqueeze(0) <= cache_position.unsqueeze(1)
        for i, layer in enumerate(inner.layers):
            h = h + self._attention(i, layer.self_attn, layer.input_layernorm(h), cos, sin, cache_position, end,
                                    allowed)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm.lm_head(inner.norm(h))
