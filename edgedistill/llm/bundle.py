"""Causal-LM bundles: the exported model, its tokenizer (with chat template) and a generation config.

Same on-disk format as the encoder bundles (:mod:`edgedistill.export.bundle`
writes, :mod:`edgedistill.runtime.format` verifies the sha256 of every file);
the manifest says ``kind = "causal-lm"``. Opening (verify, then load, then
generate) is the runtime's :class:`edgedistill.runtime.CausalLM`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ..errors import RecipeError
from ..export.bundle import write_bundle, write_zip
from ..export.schemes import get_task_scheme
from ..runtime.causal_lm import GENERATION_FILE, KIND, CausalLM, check_causal_lm

__all__ = ["CausalLM", "check_causal_lm", "export_llm_bundle", "open_llm_bundle"]
DEFAULT_CACHE_LEN = 512


def _ids(*values) -> list[int]:
    out: list[int] = []
    for v in values:
        for x in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(x, int) and x not in out:
                out.append(x)
    return out


def generation_config(model, tok, max_cache_len: int) -> dict:
    """What a runtime needs to generate as the model was trained: stop ids, context, bos handling."""
    gc = getattr(model, "generation_config", None)
    return {
        "eos_token_ids": _ids(getattr(gc, "eos_token_id", None), model.config.eos_token_id, tok.eos_token_id),
        "bos_token_id": tok.bos_token_id,
        # Llama-2-style tokenizers expect BOS first; SmolLM2's does not (its template adds <|im_start|>).
        "add_bos": bool(getattr(tok, "add_bos_token", False)),
        "max_context": max_cache_len,
        "chat_template": bool(getattr(tok, "chat_template", None)),
    }


def model_info(cfg, params: int, architecture: str = "") -> dict:
    """The shape facts the bench needs to count multiply-accumulates per token."""
    heads = cfg.num_attention_heads
    return {"architecture": architecture, "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_attention_heads": heads,
            "num_key_value_heads": getattr(cfg, "num_key_value_heads", None) or heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, "vocab_size": cfg.vocab_size,
            "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)), "params": params,
            "fp32_weight_bytes": params * 4}


def export_llm_bundle(student_dir: str | Path, dest: str | Path, scheme: str = "et-8da4w", target: str | None = None,
                      max_cache_len: int | None = None, zip_bundle: bool = False, attention: str | None = None) -> Path:
    """Export the HF causal-LM folder ``student_dir`` with ``scheme`` into the bundle folder ``dest``.

    ``scheme`` may be an old name (``8da4w``, ``onnx-int8``, ...); the manifest records the canonical one.
    ``attention`` (edgedistill.llm.recipe.ATTENTIONS; None: ``custom`` for ExecuTorch schemes) is the ExecuTorch
    program's; an ONNX scheme takes only ``filled`` (what its past key/values do). An ExecuTorch bundle records what
    its program needs: ``generation.json`` ``kernels`` is ``llama`` when it calls ExecuTorch's LLM kernels, else
    ``aten``."""
    from ..targets import load_target
    from .recipe import DEFAULT_ATTENTION, check_attention
    from .teacher import load_causal_lm

    spec = get_task_scheme(scheme, "causal-lm", "[export] key 'schemes' / --scheme")
    scheme = spec.name
    if attention is None:
        attention = DEFAULT_ATTENTION if spec.backend == "executorch" else "filled"
    check_attention(attention, "[export] key 'attention' / --attention")
    if spec.backend != "executorch" and attention != "filled":
        raise RecipeError(f"[export] key 'attention' / --attention: {attention!r} applies to ExecuTorch schemes "
                          f"(et-*); {scheme!r} is an ONNX scheme (its past key/values are sized to the filled "
                          "length already)")
    student_dir, dest = Path(student_dir), Path(dest)
    tgt = load_target(target) if target else None
    model, tok = load_causal_lm(student_dir)
    limit = int(getattr(model.config, "max_position_embeddings", DEFAULT_CACHE_LEN))
    cache = max_cache_len or min(DEFAULT_CACHE_LEN, limit)
    if not 2 <= cache <= limit:
        raise RecipeError(f"[export] key 'max_cache_len': expected 2..{limit} (the model's position limit), "
                          f"got {cache}")
    params = sum(p.numel() for p in model.parameters())
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.export.", dir=dest.parent) as tmp:
        program = {}
        if spec.backend == "executorch":
            from .export_pte import effective_attention

            program["attention"] = effective_attention(model, attention)
            if program["attention"] != attention:  # a decoder the filled forward does not know: said, not hidden
                program["fallback_from"] = attention
            model_path = spec.export_lm(model, Path(tmp) / spec.model_file, cache, attention=attention)
        else:
            model_path = spec.export_lm(model, Path(tmp) / spec.model_file, cache)
        cfg = model.config
        manifest = {
            "kind": KIND, "task": "text-generation", "backend": spec.backend, "scheme": scheme,
            "quantization": {"scheme": scheme, "description": spec.description},
            "target": {"name": tgt.name, "threads": tgt.device.threads} if tgt else {"name": "none"},
            "model": model_info(cfg, params, type(model).__name__),
            "sizes": {"model_bytes": model_path.stat().st_size, "fp32_weight_bytes": params * 4},
            "generation": {**generation_config(model, tok, cache),
                           **({"kernels": "llama" if program["attention"] == "custom" else "aten"} if program else {})},
            **({"program": program} if program else {}),
            "source": {"student": str(student_dir.resolve()), "export_s": round(time.time() - t0, 1)},
        }
        extra = {GENERATION_FILE: (json.dumps(manifest["generation"], indent=2) + "\n").encode()}
        write_bundle(dest, model_path, student_dir, manifest, model_name=spec.model_file, extra_files=extra)
    if zip_bundle:
        write_zip(dest)
    return dest


def open_llm_bundle(path: str | Path, threads: int | None = None) -> CausalLM:
    return CausalLM(path, threads)
