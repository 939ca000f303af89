"""Quantization-aware distillation (QAD) schemes: ``[distill] qat``, one record each, in one registry.

A QAT scheme trains the student through fake quantization that is, op for op, what one export
scheme does to it afterwards: the same integer ranges, the same scale algorithm, the same
granularity. A scheme is therefore tied to exactly one export scheme (``export_scheme``), and an
export with another scheme would quantize with other scales (the trap peers hit: QAT models that
lose their gain, or worse, when the exporter re-derives scales its own way).

Like :mod:`edgedistill.export.schemes` this table is torch-free and cheap to import (recipes parse
without torch); ``prepare``/``release`` are ``"module:function"`` references imported when used:
``prepare(model) -> model`` swaps in fake-quantizing modules (same parameters, same state_dict
keys), ``release(model) -> model`` swaps them back once training is done, leaving plain modules
whose weights the export scheme then quantizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RecipeError
from ..registry import Registry
from ..registry import resolve as _resolve


@dataclass(frozen=True)
class QatScheme:
    name: str
    task: str
    """``encoder`` (embedding and classification students) or ``causal-lm``."""
    export_scheme: str | None
    """The export scheme (edgedistill.export.schemes) whose quantization training emulates; None for ``none``."""
    description: str
    prepare: str | None = None
    release: str | None = None

    def prepare_fn(self) -> Callable:
        return _resolve(self.prepare) if self.prepare else (lambda model: model)

    def release_fn(self) -> Callable:
        return _resolve(self.release) if self.release else (lambda model: model)


QAT_SCHEMES: Registry[QatScheme] = Registry("qat scheme", "[distill] key 'qat'")

_ENC = "edgedistill.distill.qat:"
_LM = "edgedistill.llm.qat:"

for _s in (
    QatScheme("none", "encoder", None, "plain fp32 training; the export quantizes after training (PTQ)"),
    QatScheme("int8", "encoder", "int8-dynamic", "onnxruntime's int8-dynamic, emulated: int8 symmetric weights per "
              "output channel, uint8 activations per tensor from each call's min/max, uint8 per-tensor embedding "
              "tables and embedding LayerNorm", prepare=_ENC + "prepare_int8", release=_ENC + "release"),
    QatScheme("int8-static", "encoder", "int8-static", "onnxruntime's int8-static, emulated: int8 symmetric "
              "per-channel weights and int8 asymmetric inputs on the Linears outside the fused attention, the input "
              "ranges observed during training (moving min/max) and exported instead of calibration; uint8 "
              "embedding tables", prepare="edgedistill.distill.qat_static:prepare_int8_static",
              release="edgedistill.distill.qat_static:release"),
    QatScheme("8da4w", "causal-lm", "et-8da4w", "torchao QAT of the export's 8da4w: int8 per-token asymmetric "
              "activations, int4 symmetric weights in groups of 32 (linears incl. lm_head), int8 per-row "
              "embedding", prepare=_LM + "prepare_8da4w", release=_LM + "release"),
):
    QAT_SCHEMES.add(_s.name, _s)


def names(task: str) -> list[str]:
    return ["none"] + [n for n, s in QAT_SCHEMES.items() if s.task == task and n != "none"]


def get_qat(name: str, task: str, where: str = "[distill]") -> QatScheme:
    """The record for ``name``, refused in one line if it does not exist or is not for ``task``."""
    s = QAT_SCHEMES.get(name)
    if s is None or (name != "none" and s.task != task):
        raise RecipeError(f"{where} key 'qat': expected one of {', '.join(repr(n) for n in names(task))} for "
                          f"{task} students, got {name!r}")
    return s


def check_export_scheme(qat: str, scheme: str, where: str) -> None:
    """Refuse an export scheme other than the one a QAT scheme trained for (it would use other scales)."""
    s = QAT_SCHEMES.get(qat)
    if s is not None and s.export_scheme is not None and scheme != s.export_scheme:
        raise RecipeError(f"{where}: [distill] qat = {qat!r} trains for the {s.export_scheme!r} export; exporting "
                          f"with {scheme!r} would quantize with other scales: use {s.export_scheme!r} or qat = 'none'")
