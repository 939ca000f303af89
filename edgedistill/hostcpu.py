"""What this host's CPU can do, from /proc/cpuinfo: torch-free, so the ONNX runtime path may ask too.

Two questions change what the project does: whether bf16 training has hardware behind it
(:func:`cpu_bf16_units`, warned about in :mod:`edgedistill.distill.device`) and whether onnxruntime's
int8 kernels are exact here (:func:`ort_int8_saturates`, acted on in :mod:`edgedistill.backends.ort`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

INT8_DOT_UNITS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
EXACT_INT8_ENV = "EDGEDISTILL_ORT_EXACT_INT8"
"""``1`` / ``0`` force onnxruntime's exact u8u8 int8 kernels on / off; unset, :func:`ort_int8_saturates` decides."""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The first ``flags`` line of /proc/cpuinfo (or of ``cpuinfo``); None where there is none (not Linux on x86)."""
    return _host_flags() if cpuinfo is None else _parse_flags(cpuinfo)


def _parse_flags(text: str) -> frozenset[str] | None:
    try:
        return frozenset(text.split("\nflags", 1)[1].split(":", 1)[1].splitlines()[0].split())
    except IndexError:
        return None


@functools.cache
def _host_flags() -> frozenset[str] | None:
    # Read once per process: every onnxruntime session asks (ort_int8_saturates).
    try:
        return _parse_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def cpu_bf16_units(cpuinfo: str | None = None) -> list[str] | None:
    """The bf16 matrix units (``amx_bf16``, ``avx512_bf16``) among :func:`cpu_flags`; None where nothing is known."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else sorted(flags & {"amx_bf16", "avx512_bf16"})


def ort_int8_saturates(cpuinfo: str | None = None) -> bool:
    """True on an x86 CPU without an int8 dot-product unit (VNNI, AMX), where onnxruntime's u8 x s8 kernels sum
    each pair of products in saturating int16 (``VPMADDUBSW``: 255 x 127 x 2 = 64,770 is clamped to 32,767).

    Reproduced with one ``MatMulInteger`` under ``qemu-x86_64 -cpu Haswell`` (docs/backends.md, "int8 on x86
    without VNNI"). The ``EDGEDISTILL_ORT_EXACT_INT8`` environment variable (``1`` / ``0``) overrides the detection.
    """
    forced = os.environ.get(EXACT_INT8_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    flags = cpu_flags(cpuinfo)
    return flags is not None and "avx2" in flags and not flags & INT8_DOT_UNITS
