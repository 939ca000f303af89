"""Backends: the runtimes that run a model file (onnxruntime, ExecuTorch, PyTorch eager).

One module per backend declares, at module level, ``NAME``, ``LABEL`` (what
reports print), ``SUFFIX`` (the file it recognises; None for a model folder),
``EXTRA`` (the pip extra), ``TORCH_FREE``, ``RUNTIME_MODULES`` (imported before a
bench worker's bare-process memory reading), and the functions
``require(where, hint)`` (the one "needs package X" error), ``open(path,
threads, **options) -> Runner`` and, for causal LMs, ``open_lm(path,
max_cache_len, threads)``. Adding a backend is one module plus one entry in
:data:`BACKENDS` (see docs/backends.md).

Modules are imported when first asked for, so the torch-free runtime never
loads the PyTorch backend (whose functions reach into ``edgedistill.models``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ..errors import ModelError
from .base import Runner, as_numpy, installed

BACKENDS: dict[str, str] = {"onnxruntime": "ort", "executorch": "et", "torch": "torch_eager"}
"""Backend name -> its module in this package."""
ALIASES = {"onnx": "onnxruntime", "pytorch": "torch"}
"""Other names for a backend (the bench's report labels)."""

__all__ = ["ALIASES", "BACKENDS", "Runner", "as_numpy", "for_path", "get", "installed", "open_file"]


def get(name: str) -> ModuleType:
    """The backend module named ``name`` (or one of its :data:`ALIASES`)."""
    module = BACKENDS.get(ALIASES.get(name, name))
    if module is None:
        raise ModelError(f"backend {name!r} is unknown (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"{__name__}.{module}")


def for_path(path: str | Path) -> ModuleType:
    """The backend that runs ``path``: by file suffix, or PyTorch for a model folder."""
    p = Path(path)
    if p.is_dir():
        return get("torch")
    files = [get(n) for n in BACKENDS if n != "torch"]  # the file backends; the folder one stays unimported
    for mod in files:
        if p.suffix == mod.SUFFIX:
            return mod
    raise ModelError(f"{p}: no backend runs this file (expected a model folder or one of "
                     f"{', '.join(m.SUFFIX for m in files)})")


def open_file(path: str | Path, threads: int = 1, **options) -> Runner:
    """Open any model file or folder with the backend its suffix names."""
    return for_path(path).open(path, threads, **options)
