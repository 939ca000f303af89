"""Fake quantization for encoder students that is onnxruntime's ``int8-dynamic`` scheme, op for op.

What ``quantize_dynamic(per_channel=True, weight_type=QInt8)`` does to the fused BERT graph
(:func:`edgedistill.export.quant.int8_dynamic`; checked on the exported graph in the unit tests):

* every MatMul/Gemm weight and the fused QKV weight of ``Attention``: int8, symmetric, one scale
  per output channel, ``scale = absmax / 127`` (range [-127, 127], no reduced range);
* their input activations: ``DynamicQuantizeLinear``: uint8, one scale per tensor from this
  call's min/max, the range stretched to include 0, zero point ``round(-min / scale)``;
* ``EmbedLayerNormalization``'s initializers (word, position and token-type tables, gamma and
  beta of the embedding LayerNorm): uint8 asymmetric per tensor, the activation type.

Training emulates exactly that, so there is nothing to learn for the export: its scales are
functions of the trained weights (and of each call's activations), computed the same way. Gradients
pass straight through the rounding (STE). The modules are swapped by class only: parameters and
state_dict keys stay the same, so checkpoints, best-weight snapshots and ``save_pretrained`` work
unchanged; :func:`release` swaps the plain classes back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_TINY = torch.finfo(torch.float32).tiny


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


def int8_per_channel(w: torch.Tensor) -> torch.Tensor:
    """A Linear weight ``[out, in]`` fake-quantized like ORT's per-channel symmetric QInt8 MatMul weight."""
    absmax = w.detach().abs().amax(dim=1, keepdim=True)
    scale = absmax * 2 / 254  # compute_scale_zp: (rmax - rmin) / (qmax - qmin) on [-absmax, absmax], [-127, 127]
    scale = torch.where(scale < _TINY, torch.ones_like(scale), scale)
    return _ste(w, torch.clamp(torch.round(w / scale), -127, 127) * scale)


def uint8_per_tensor(x: torch.Tensor) -> torch.Tensor:
    """``DynamicQuantizeLinear`` (and ORT's uint8 quantization of activation-typed initializers)."""
    d = x.detach()
    lo, hi = d.min().clamp(max=0), d.max().clamp(min=0)
    scale = (hi - lo) / 255
    scale = torch.where(scale < _TINY, torch.ones_like(scale), scale)  # all zeros: ORT uses scale 1, zero point 0
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(x / scale) + zp, 0, 255)
    return _ste(x, (q - zp) * scale)


class Int8Linear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(uint8_per_tensor(x), int8_per_channel(self.weight), self.bias)


class Uint8Embedding(torch.nn.Embedding):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, uint8_per_tensor(self.weight), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


class Uint8LayerNorm(torch.nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, uint8_per_tensor(self.weight), uint8_per_tensor(self.bias),
                            self.eps)


_SWAPS = {torch.nn.Linear: Int8Linear, torch.nn.Embedding: Uint8Embedding, torch.nn.LayerNorm: Uint8LayerNorm}
_PLAIN = {v: k for k, v in _SWAPS.items()}


def _embedding_parts(model) -> set[int]:
    """ids of the Embedding / LayerNorm modules ORT fuses into EmbedLayerNormalization (a ``*Embeddings`` block's
    direct children); every other LayerNorm stays fp32 in the export, so it must here too."""
    parts = set()
    for mod in model.modules():
        if type(mod).__name__.endswith("Embeddings"):
            parts |= {id(c) for c in mod.children() if type(c) in (torch.nn.Embedding, torch.nn.LayerNorm)}
    return parts


def prepare_int8(model):
    """Swap every Linear and the embedding block's tables and LayerNorm to their fake-quant classes, in place."""
    emb = _embedding_parts(model)
    for mod in model.modules():
        if type(mod) is torch.nn.Linear or id(mod) in emb:
            mod.__class__ = _SWAPS[type(mod)]
    return model


def release(model):
    """Back to the plain classes (the trained weights are what the export quantizes)."""
    for mod in model.modules():
        if type(mod) in _PLAIN:
            mod.__class__ = _PLAIN[type(mod)]
    return model


def is_prepared(model) -> bool:
    return any(type(m) in _PLAIN for m in model.modules())
