"""Quantization schemes: one record per scheme, for encoders and causal LMs, in one registry.

A scheme says which backend runs the file it makes, whether it needs
calibration text, whether the device must do fp16 arithmetic, which scheme to
suggest when it fails the parity gate, which arithmetic the device model
counts, the parity tolerances for encoders, and where its implementations are:
``encoder`` (embedding and classification students) and ``lm`` (causal LMs),
each a ``"module:function"`` imported only when the scheme is used, so this
table is cheap to import and is the whole list (docs/backends.md prints it).

Names: ONNX (onnxruntime) schemes are plain (``int8-dynamic``); ExecuTorch
schemes start with ``et-``. Old causal-LM names stay accepted (:data:`ALIASES`);
outputs always carry the canonical name.

Implementation signatures:
- onnxruntime encoder: ``fn(fp32_onnx, dest, ctx: QuantContext | None)``;
- executorch encoder: ``fn(model_dir, dest, EtOptions) -> delegation info``;
- causal LM (both backends): ``fn(model, dest, max_cache_len) -> dest``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import GateError, RecipeError
from ..registry import Registry
from ..registry import resolve as _resolve


@dataclass(frozen=True)
class Scheme:
    name: str
    backend: str
    """The runtime that runs the file: ``onnxruntime`` or ``executorch`` (see :mod:`edgedistill.backends`)."""
    description: str
    calibrated: bool = False
    """Needs calibration sentences from the training split (static activation ranges)."""
    needs_fp16: bool = False
    """Runs fp16 arithmetic: refused for a target whose CPU lacks it (``[export] fp16 = false``)."""
    fallback: str | None = None
    """The scheme to suggest when this one fails the parity gate (None: nothing gentler)."""
    compute: str = "fp32"
    """The arithmetic the device model counts for its matrix products: ``fp32``, ``int8`` or ``fp16``."""
    requires_isa: tuple[str, ...] = ()
    """CPU features the target must list, or the scheme runs emulated and slower."""
    min_mean_cosine: float = 0.98
    min_cosine: float = 0.90
    max_probe_drop: float = 0.015
    """Encoder parity tolerances against the fp32 student (a target may tighten them)."""
    encoder: str | None = None
    """``"module:function"`` exporting an encoder student, or None."""
    lm: str | None = None
    """``"module:function"`` exporting a causal LM into a bundle's model file, or None."""

    @property
    def model_file(self) -> str:
        """The model's file name inside a bundle."""
        return "model.pte" if self.backend == "executorch" else "model.onnx"

    @property
    def tasks(self) -> tuple[str, ...]:
        return (("encoder",) if self.encoder else ()) + (("causal-lm",) if self.lm else ())

    @property
    def fn(self) -> Callable:
        """The encoder implementation."""
        if not self.encoder:
            raise RecipeError(f"scheme {self.name!r} exports causal LMs only (encoder schemes: "
                              f"{', '.join(names('encoder'))})")
        return _resolve(self.encoder)

    @property
    def export_lm(self) -> Callable:
        """The causal-LM implementation."""
        if not self.lm:
            raise RecipeError(f"scheme {self.name!r} exports encoders only (causal-LM schemes: "
                              f"{', '.join(names('causal-lm'))})")
        return _resolve(self.lm)

    @property
    def needs_calibration(self) -> bool:  # the pre-record name, kept for callers
        return self.calibrated


SCHEMES: Registry[Scheme] = Registry("quantization", "[export] quantization / --quant / schemes")

_Q = "edgedistill.export.quant:"
_ET = "edgedistill.export.executorch:"
_LM_ONNX = "edgedistill.llm.export_onnx:"
_LM_PTE = "edgedistill.llm.export_pte:"
_EXACT = dict(min_mean_cosine=0.9999, min_cosine=0.999, max_probe_drop=0.005)

for _s in (
    # onnxruntime
    Scheme("fp32", "onnxruntime", "no quantisation (fp32 graph; encoders get onnxruntime's fusions)", **_EXACT,
           encoder=_Q + "fp32", lm=_LM_ONNX + "bundle_fp32"),
    Scheme("int8-dynamic", "onnxruntime", "int8 weights per output channel, int8 activations quantised at run "
           "time (MatMul, Attention, Gather)", fallback="fp32", compute="int8",
           encoder=_Q + "int8_dynamic", lm=_LM_ONNX + "bundle_int8_dynamic"),
    Scheme("int8-static", "onnxruntime", "static int8 (QDQ) MatMul/Gemm: per-channel weights, input ranges "
           "calibrated on training sentences; fused attention projections stay fp32; int8 word-embedding table",
           calibrated=True, fallback="int8-dynamic", compute="int8", encoder=_Q + "int8_static"),
    Scheme("int8-weight", "onnxruntime", "8-bit weight-only MatMulNBits (blocks of 32, symmetric) for every "
           "linear incl. the lm_head, int8 embedding table; fp32 activations", fallback="fp32",
           lm=_LM_ONNX + "bundle_int8_weight"),
    Scheme("int4-weight", "onnxruntime", "4-bit weight-only MatMulNBits (block 32, symmetric) for MatMul weights; "
           "int8 word-embedding table; fp32 activations", fallback="int8-dynamic", min_mean_cosine=0.97,
           max_probe_drop=0.02, encoder=_Q + "int4_weight", lm=_LM_ONNX + "bundle_int4_weight"),
    Scheme("fp16", "onnxruntime", "fp16 weights and arithmetic inside the graph, fp32 inputs/outputs (cores with "
           "fp16 only)", needs_fp16=True, fallback="fp32", compute="fp16", requires_isa=("fp16",),
           min_mean_cosine=0.9995, min_cosine=0.995, max_probe_drop=0.005, encoder=_Q + "fp16"),
    # executorch
    Scheme("et-fp32", "executorch", "ExecuTorch .pte, fp32, XNNPACK (causal LMs: static KV cache)", **_EXACT,
           encoder=_ET + "et_fp32", lm=_LM_PTE + "bundle_fp32"),
    Scheme("et-int8", "executorch", "ExecuTorch .pte: torchao int8 weights per channel with int8 dynamic "
           "activations (linears), int8 embedding tables", fallback="et-fp32", compute="int8",
           encoder=_ET + "et_int8"),
    Scheme("et-8da4w", "executorch", "ExecuTorch .pte: int4 weights (groups of 32) with int8 dynamic activations "
           "(linears), int8 embedding tables (causal LMs: static KV cache)", fallback="et-int8", compute="int8",
           min_mean_cosine=0.97, max_probe_drop=0.02, encoder=_ET + "et_8da4w", lm=_LM_PTE + "bundle_8da4w"),
    Scheme("et-int8-static", "executorch", "ExecuTorch .pte: PT2E static int8 (per-channel weights, activations "
           "calibrated on training sentences); embeddings stay fp32", calibrated=True, fallback="et-int8",
           compute="int8", encoder=_ET + "et_int8_static"),
):
    SCHEMES.add(_s.name, _s)

ALIASES = {"8da4w": "et-8da4w", "onnx-fp32": "fp32", "onnx-int8": "int8-weight", "onnx-int4": "int4-weight",
           "onnx-int8-dynamic": "int8-dynamic"}
"""Causal-LM scheme names before the registries merged (recipes and ``--scheme`` still accept them).
The old causal-LM ``fp32`` meant ExecuTorch; ``fp32`` is now the ONNX scheme for every task (``et-fp32``
is the ExecuTorch one)."""


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def get_scheme(name: str) -> Scheme:
    """The record for ``name`` (an alias gives the canonical record)."""
    return SCHEMES.lookup(canonical(name))


def names(task: str | None = None) -> list[str]:
    """Canonical scheme names, those of one task (``encoder`` or ``causal-lm``) if given."""
    return [n for n, s in SCHEMES.items() if task is None or task in s.tasks]


def get_task_scheme(name: str, task: str, where: str) -> Scheme:
    """The record, refused with a message naming ``where`` if it does not export ``task``."""
    s = SCHEMES.get(canonical(name))
    if s is None:
        noun = "quantization" if task == "encoder" else "scheme"  # what the recipe key calls it
        old = f"; old causal-LM names {', '.join(ALIASES)}" if task == "causal-lm" else ""
        raise RecipeError(f"{where}: unknown {noun} {name!r} (registered for {task} models: "
                          f"{', '.join(names(task))}{old})")
    if task not in s.tasks:
        raise RecipeError(f"{where}: scheme {s.name!r} does not export {task} models (those that do: "
                          f"{', '.join(names(task))})")
    return s


def check_scheme_fits(scheme: Scheme, target) -> None:
    """Refuse a scheme the target's CPU cannot run well, with the reason."""
    missing = [isa for isa in scheme.requires_isa if isa not in target.device.isa]
    if missing or (scheme.needs_fp16 and not target.export.fp16):
        raise GateError(f"{scheme.name} is refused for target {target.name!r}: its CPU ({target.device.cpu}) lacks "
                        f"{', '.join(missing) or 'fp16 arithmetic'}, so it would run emulated and slower; "
                        f"use --quant {target.export.quantization}")
