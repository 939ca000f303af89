"""Where training runs and in which precision: ``[distill] device`` and ``[distill] precision``.

One place resolves ``device = "auto" | "cpu" | "cuda" | "cuda:N"`` (auto = the GPU when torch
sees one, else the CPU) and checks ``precision = "fp32" | "bf16" | "fp16"`` against it, so a
recipe asking for what the host lacks fails at load with one line naming the key. The loops
use :class:`Runtime` for the autocast context, the fp16 gradient scaler, moving batches and
reading peak GPU memory. Models feed on the device their parameters are on
(:func:`model_device`), so teacher passes and evaluations need no extra argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch

from ..errors import RecipeError
from ..hostcpu import cpu_bf16_units
from ..progress import say

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Teacher passes (no gradients) take bigger batches on a GPU: the whole point is to fill it.
TEACHER_BATCH = {"cpu": 64, "cuda": 256}
# Positions whose full-vocabulary logits the LLM loss builds at once. 512 keeps a CPU step's memory small;
# on a GPU, small chunks leave it launch-bound, and 8192 x 49,152 fp32 logits (1.6 GB) still fit anywhere.
LOSS_CHUNK = {"cpu": 512, "cuda": 8192}


def check_device_spec(device: str, where: str = "[distill]") -> None:
    """Syntax only (recipe load must not depend on the host): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if device in ("auto", "cpu", "cuda"):
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise RecipeError(f"{where} key 'device': expected one of auto, cpu, cuda, cuda:N, got {device!r}")


def check_precision_spec(precision: str, where: str = "[distill]") -> None:
    if precision not in PRECISIONS:
        raise RecipeError(f"{where} key 'precision': expected one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_device(device: str = "auto", where: str = "[distill]") -> torch.device:
    """The torch device a recipe's ``device`` names on this host; a clear RecipeError when it has none."""
    check_device_spec(device, where)
    if device == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RecipeError(f"{where} key 'device': {device!r} asked for, but torch sees no CUDA GPU on this host "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device = \"auto\" "
                          "or \"cpu\"")
    n = torch.cuda.device_count()
    index = int(device[5:]) if ":" in device else torch.cuda.current_device()
    if index >= n:
        raise RecipeError(f"{where} key 'device': {device!r} asked for, but this host has {n} CUDA GPU(s) "
                          f"(cuda:0..cuda:{n - 1})")
    return torch.device("cuda", index)


def check_precision(precision: str, dev: torch.device, where: str = "[distill]") -> None:
    """Refuse a precision the resolved device cannot train in."""
    check_precision_spec(precision, where)
    if precision == "fp16" and dev.type != "cuda":
        raise RecipeError(f"{where} key 'precision': fp16 training needs a CUDA GPU (device is {dev}); "
                          "use \"bf16\" or \"fp32\" on the CPU")
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RecipeError(f"{where} key 'precision': {torch.cuda.get_device_name(dev)} has no bf16 support; "
                          "use \"fp16\" or \"fp32\"")


@dataclasses.dataclass
class Runtime:
    """A resolved (device, precision) pair and what the training loops need from it."""

    device: torch.device
    precision: str = "fp32"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def teacher_batch(self) -> int:
        return TEACHER_BATCH["cuda" if self.is_cuda else "cpu"]

    @property
    def loss_chunk(self) -> int:
        return LOSS_CHUNK["cuda" if self.is_cuda else "cpu"]

    def autocast(self):
        dtype = _DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def scaler(self):
        """A GradScaler for fp16 (its gradients underflow without one); None otherwise."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def to(self, obj):
        return to_device(obj, self.device)

    def describe(self) -> str:
        if self.is_cuda:
            name = torch.cuda.get_device_name(self.device)
            total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
            return f"device {self.device} ({name}, {total:.0f} GiB), precision {self.precision}"
        return f"device cpu, precision {self.precision}"

    def reset_peak(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_gib(self) -> float | None:
        """Peak GPU memory allocated since the last :meth:`reset_peak` (GiB); None on the CPU."""
        return peak_memory_gib(self.device)


_warned: set[str] = set()


def warn_slow_cpu_bf16(precision: str, dev: torch.device, where: str = "[distill]") -> bool:
    """Say once per process that bf16 training on an x86 CPU without bf16 units is emulated and slow."""
    if precision != "bf16" or dev.type != "cpu" or where in _warned or cpu_bf16_units() != []:
        return False
    _warned.add(where)
    # Measured 2026-12-07 (benchmarks/results/llm_train_precision_epyc.md): an AMD EPYC VM without them trained
    # the LLM student 12.6x slower in bf16 than in fp32; the AMX VM of llm_train_precision.md 1.29x faster.
    say(f"warning: {where} precision = \"bf16\" on a CPU without bf16 units (no avx512_bf16 / amx_bf16 in "
        "/proc/cpuinfo): autocast emulates it, many times slower than fp32 here; use precision = \"fp32\"")
    return True


def runtime(spec, where: str = "[distill]") -> Runtime:
    """The Runtime of a [distill] spec (any object with ``device``/``precision``; old specs mean auto/fp32)."""
    dev = resolve_device(getattr(spec, "device", "auto") or "auto", where)
    precision = getattr(spec, "precision", "fp32") or "fp32"
    check_precision(precision, dev, where)
    warn_slow_cpu_bf16(precision, dev, where)
    return Runtime(dev, precision)


def peak_memory_gib(dev: torch.device | str) -> float | None:
    dev = torch.device(dev)
    if dev.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)


def model_device(model) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_device(obj, dev: torch.device):
    """``obj`` with every tensor inside (dicts, lists, tuples, dataclasses) on ``dev``; CPU -> CPU is free."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev, non_blocking=dev.type == "cuda") if obj.device != dev else obj
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, dev) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(to_device(v, dev) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_device(getattr(obj, f.name), dev)
                                           for f in dataclasses.fields(obj) if f.init})
    if hasattr(obj, "data") and hasattr(obj, "keys") and hasattr(obj, "to"):  # a tokenizer's BatchEncoding
        return {k: to_device(obj[k], dev) for k in obj.keys()}
    return obj


def move_modules(owner, dev: torch.device) -> None:
    """Move every module and tensor attribute of ``owner`` (a strategy: projections, exits, EMA copy,
    peers) to ``dev`` in place; Parameters keep their identity, so optimizers built earlier still hold them."""
    for name, value in list(vars(owner).items()):
        if isinstance(value, torch.nn.Module):
            value.to(dev)
        elif isinstance(value, torch.nn.Parameter):
            value.data = value.data.to(dev)
        elif isinstance(value, torch.Tensor):
            setattr(owner, name, value.to(dev))


def move_params(params, dev: torch.device) -> None:
    """Move loose Parameters in place (their gradients go with them)."""
    for p in params:
        if p.device != dev:
            p.data = p.data.to(dev)
            if p.grad is not None:
                p.grad = p.grad.to(dev)


@contextlib.contextmanager
def on_device(model, dev: torch.device) -> Iterator:
    """Run ``model`` on ``dev`` inside the block, then put it back where it was (teacher passes)."""
    home = model_device(model)
    if home == dev:
        yield model
        return
    model.to(dev)
    try:
        yield model
    finally:
        model.to(home)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
