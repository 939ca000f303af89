"""LLM export schemes: name -> (backend, model file, exporter, loader).

A scheme says how a causal LM becomes one model file in a bundle and how that
file is opened again as an object with ``step(ids, pos) -> last logits`` and
``max_cache_len`` (what :func:`edgedistill.llm.generate.stream` drives). The
ExecuTorch schemes live here; another backend (ONNX with past key/values)
registers its own entries with :func:`register` from its module, listed in
``_PLUGINS`` so that importing this registry makes them available.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry


@dataclass(frozen=True)
class LLMScheme:
    name: str
    backend: str
    """Runtime that runs the file: ``executorch`` or ``onnxruntime``."""
    model_file: str
    """File name inside the bundle."""
    export: Callable
    """``export(model, out_path, max_cache_len) -> Path`` (the model is not changed)."""
    load: Callable
    """``load(path, max_cache_len, threads) -> LM`` with ``step(ids, pos)``."""
    description: str = ""


LLM_SCHEMES: Registry[LLMScheme] = Registry("LLM export scheme", "[export] key 'schemes'")

# Modules that register further schemes when they exist (the ONNX exporter is built separately).
_PLUGINS = ("edgedistill.llm.export_onnx",)


def register(scheme: LLMScheme) -> LLMScheme:
    return LLM_SCHEMES.add(scheme.name, scheme)


def _pte_export(scheme: str):
    def export(model, out: Path, max_cache_len: int) -> Path:
        from .export_pte import export_pte

        return export_pte(model, out, scheme, max_cache_len=max_cache_len)

    return export


def _pte_load(path: Path, max_cache_len: int, threads: int | None = None):
    from .generate import PteLM

    if threads:
        from ..export.pte import set_threads

        set_threads(threads)  # XNNPACK's pool, before the first program loads
    return PteLM(path, max_cache_len)


register(LLMScheme("fp32", "executorch", "model.pte", _pte_export("fp32"), _pte_load,
                   "ExecuTorch .pte, static KV cache, fp32 XNNPACK"))
register(LLMScheme("8da4w", "executorch", "model.pte", _pte_export("8da4w"), _pte_load,
                   "ExecuTorch .pte, static KV cache, int8 dynamic activations x int4 grouped weights, int8 embedding"))


def _load_plugins() -> None:
    for mod in _PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # the plugin exists but its own import failed: that is a real error
                raise


_load_plugins()


def get_scheme(name: str) -> LLMScheme:
    return LLM_SCHEMES.lookup(name)
