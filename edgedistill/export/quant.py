"""Quantisation schemes for ONNX, registered by name.

Each scheme turns an optimised fp32 ONNX file into the deployable one and
declares the parity tolerances it is held to and what the device must have
for it to pay off. Targets name a scheme; ``--quant`` overrides it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import GateError
from ..registry import Registry
from .onnx import _quiet


@dataclass(frozen=True)
class Scheme:
    name: str
    fn: Callable[[Path, Path], None]
    description: str
    min_mean_cosine: float
    min_cosine: float
    max_probe_drop: float
    requires_isa: tuple[str, ...] = ()
    backend: str = "onnxruntime"
    """onnxruntime: ``fn(fp32_onnx, dest)``; executorch: ``fn(model_dir, dest, EtOptions) -> info``."""


SCHEMES: Registry[Scheme] = Registry("quantization", "[export] quantization / --quant")


def register_scheme(name: str, description: str, min_mean_cosine: float, min_cosine: float, max_probe_drop: float,
                    requires_isa: tuple[str, ...] = (), backend: str = "onnxruntime"):
    def deco(fn):
        SCHEMES.add(name, Scheme(name, fn, description, min_mean_cosine, min_cosine, max_probe_drop, requires_isa,
                                 backend))
        return fn

    return deco


def get_scheme(name: str) -> Scheme:
    return SCHEMES.lookup(name)


def check_scheme_fits(scheme: Scheme, target) -> None:
    """Refuse a scheme the target's CPU cannot run well, with the reason."""
    missing = [isa for isa in scheme.requires_isa if isa not in target.device.isa]
    if missing or (scheme.name.startswith("fp16") and not target.export.fp16):
        raise GateError(f"{scheme.name} is refused for target {target.name!r}: its CPU ({target.device.cpu}) lacks "
                        f"{', '.join(missing) or 'fp16 arithmetic'}, so it would run emulated and slower; "
                        f"use --quant {target.export.quantization}")


@register_scheme("fp32", "no quantisation (optimised fp32 graph)", min_mean_cosine=0.9999, min_cosine=0.999,
                 max_probe_drop=0.005)
def fp32(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)


@register_scheme("int8-dynamic",
                 "int8 weights per output channel, int8 activations quantised at run time (MatMul, Attention, Gather)",
                 min_mean_cosine=0.98, min_cosine=0.90, max_probe_drop=0.015)
def int8_dynamic(src: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        # Fused contrib ops (Attention, SkipLayerNormalization) have no shape
        # inference in the quantiser; tell it their outputs are float.
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


# The ExecuTorch schemes register themselves on import (heavy imports stay inside their functions).
from . import executorch as _executorch  # noqa: E402, F401
