"""Fake quantization for encoder students that is the ``int8-static`` export, with activation ranges
observed during training and handed to the exporter instead of calibration.

What :func:`edgedistill.export.quant.int8_static` does to the fused BERT graph: QDQ on MatMul/Gemm
only, so the Linears outside the fused ``Attention`` op (attention output, FFN in and out, a
classifier's pooler and head) get int8 symmetric per-output-channel weights (``absmax / 127``, as
int8-dynamic) and int8 *asymmetric* inputs whose range is fixed at export: ``scale = (rmax - rmin) /
255``, zero point ``round(-128 - rmin / scale)``, the range stretched to include 0. The Q/K/V
projections inside ``Attention`` stay fp32; the embedding block is quantized as in int8-dynamic.

Training keeps, per quantized Linear, a moving-average min/max of its input (the observer of
PyTorch's QAT, averaging constant 0.01; frozen in eval mode) and fake-quantizes with it.
:func:`release` writes the final ranges into ``config.qat_activation_ranges`` (module name ->
[rmin, rmax]), so they travel in the student's ``config.json``; the export passes them to
onnxruntime as ``TensorQuantOverrides`` for the input of the MatMul that holds that Linear's weight
(found by value), so the file uses the ranges training used, not a calibration of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .qat import _PLAIN, _SWAPS, _TINY, _embedding_parts, _ste, int8_per_channel

AVERAGING = 0.01
CONFIG_KEY = "qat_activation_ranges"


def int8_static_input(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """QuantizeLinear/DequantizeLinear to int8 with the fixed range [lo, hi] (ORT's compute_scale_zp)."""
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / 255
    scale = torch.where(scale < _TINY, torch.ones_like(scale), scale)
    zp = torch.clamp(torch.round(-128 - lo / scale), -128, 127)
    q = torch.clamp(torch.round(x / scale) + zp, -128, 127)
    return _ste(x, (q - zp) * scale)


class StaticInt8Linear(torch.nn.Linear):
    act_range: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            d = x.detach()
            now = torch.stack([d.min(), d.max()]).to(self.act_range)
            seen = torch.isfinite(self.act_range).all()
            self.act_range.copy_(torch.where(seen, self.act_range + AVERAGING * (now - self.act_range), now))
        lo, hi = self.act_range[0].to(x.dtype), self.act_range[1].to(x.dtype)
        return F.linear(int8_static_input(x, lo, hi), int8_per_channel(self.weight), self.bias)


def _in_fused_attention(model) -> set[int]:
    """ids of the Q/K/V Linears that onnxruntime fuses into ``Attention`` (fp32 in the int8-static file)."""
    return {id(c) for m in model.modules() if type(m).__name__.endswith("SelfAttention")
            for c in m.children() if type(c) is torch.nn.Linear}


def _shared_residual_hook(ffn_in: StaticInt8Linear):
    """onnxruntime's QDQ rewires *every* consumer of a quantized tensor to the dequantized copy. In a BERT block
    the FFN's input (the attention block's output) is also the residual added back after the FFN, so the
    residual is int8-rounded in the file too; this pre-hook on the block's ``output`` does the same."""

    def hook(module, args):
        if len(args) < 2:  # called with keywords: not the HF BERT call this mirrors
            return None
        hidden, residual, *rest = args
        lo, hi = ffn_in.act_range[0].to(residual.dtype), ffn_in.act_range[1].to(residual.dtype)
        return (hidden, int8_static_input(residual, lo, hi), *rest)

    return hook


def prepare_int8_static(model):
    """Swap in the fake-quant classes, in place. A model whose config already holds QAT ranges (a released
    QAT student) starts from them, so reloading a student reproduces what its export computes."""
    fused, emb = _in_fused_attention(model), _embedding_parts(model)
    known = getattr(getattr(model, "config", None), CONFIG_KEY, None) or {}
    for name, mod in model.named_modules():
        if type(mod) is torch.nn.Linear and id(mod) not in fused:
            mod.__class__ = StaticInt8Linear
            # [inf, -inf]: not seen yet, the first training batch sets the range
            start = known.get(name, [float("inf"), float("-inf")])
            mod.register_buffer("act_range", torch.tensor(start, dtype=torch.float32, device=mod.weight.device))
        elif id(mod) in emb:
            mod.__class__ = _SWAPS[type(mod)]
    for mod in model.modules():  # a BERT layer: intermediate.dense reads what output adds back
        ffn_in = getattr(getattr(mod, "intermediate", None), "dense", None)
        out = getattr(mod, "output", None)
        if type(ffn_in) is StaticInt8Linear and isinstance(out, torch.nn.Module):
            out._qat_residual_hook = out.register_forward_pre_hook(_shared_residual_hook(ffn_in))
    return model


def release(model):
    """Plain modules again, the observed ranges in ``config.qat_activation_ranges``."""
    ranges = {}
    for mod in model.modules():
        handle = mod.__dict__.pop("_qat_residual_hook", None)
        if handle is not None:
            handle.remove()
    for name, mod in model.named_modules():
        if type(mod) is StaticInt8Linear:
            lo, hi = (float(v) for v in mod.act_range)
            ranges[name] = [min(lo, 0.0), max(hi, 0.0)] if lo <= hi else [0.0, 0.0]
            del mod._buffers["act_range"]
            mod.__class__ = torch.nn.Linear
        elif type(mod) in _PLAIN:
            mod.__class__ = _PLAIN[type(mod)]
    cfg = getattr(model, "config", None)
    if cfg is not None:
        setattr(cfg, CONFIG_KEY, ranges)
    return model


def read_ranges(model_dir) -> list[tuple[str, list[float]]]:
    """``(weight name, [rmin, rmax])`` from a student folder's ``config.json`` (empty without QAT ranges)."""
    import json
    from pathlib import Path

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return [(f"{name}.weight", r) for name, r in (cfg.get(CONFIG_KEY) or {}).items()]
