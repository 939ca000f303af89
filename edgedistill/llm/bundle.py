"""Causal-LM bundles: the exported model, its tokenizer (with chat template) and a generation config.

Same on-disk format as the encoder bundles (:mod:`edgedistill.export.bundle`
writes, :mod:`edgedistill.runtime.format` verifies the sha256 of every file);
the manifest says ``kind = "causal-lm"``. Opening verifies first, then loads.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError, ModelError, RecipeError
from ..export.bundle import write_bundle, write_zip
from ..runtime.format import BundleFiles, verify_files
from .backends import get_scheme
from .generate import Sampling, stream

KIND = "causal-lm"
GENERATION_FILE = "generation.json"
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


def export_llm_bundle(student_dir: str | Path, dest: str | Path, scheme: str = "8da4w", target: str | None = None,
                      max_cache_len: int | None = None, zip_bundle: bool = False) -> Path:
    """Export the HF causal-LM folder ``student_dir`` with ``scheme`` into the bundle folder ``dest``."""
    from ..targets import load_target
    from .teacher import load_causal_lm

    spec = get_scheme(scheme)
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
        model_path = spec.export(model, Path(tmp) / spec.model_file, cache)
        cfg = model.config
        manifest = {
            "kind": KIND, "task": "text-generation", "backend": spec.backend, "scheme": scheme,
            "quantization": {"scheme": scheme, "description": spec.description},
            "target": {"name": tgt.name, "threads": tgt.device.threads} if tgt else {"name": "none"},
            "model": model_info(cfg, params, type(model).__name__),
            "sizes": {"model_bytes": model_path.stat().st_size, "fp32_weight_bytes": params * 4},
            "generation": generation_config(model, tok, cache),
            "source": {"student": str(student_dir.resolve()), "export_s": round(time.time() - t0, 1)},
        }
        extra = {GENERATION_FILE: (json.dumps(manifest["generation"], indent=2) + "\n").encode()}
        write_bundle(dest, model_path, student_dir, manifest, model_name=spec.model_file, extra_files=extra)
    if zip_bundle:
        write_zip(dest)
    return dest


def check_causal_lm(manifest: dict, path) -> None:
    if manifest.get("kind") != KIND:
        raise ModelError(f"{path}: not a causal-LM bundle (task {manifest.get('task')!r}); 'edgedistill generate' "
                         "needs a bundle from 'edgedistill llm export' (use 'edgedistill predict' for this one)")


class _Timed:
    """Wraps an LM to time each ``step``: the first is the prefill, the others decode one token each."""

    def __init__(self, lm):
        self.lm, self.max_cache_len, self.steps = lm, lm.max_cache_len, []

    def step(self, ids, pos):
        t0 = time.perf_counter()
        out = self.lm.step(ids, pos)
        self.steps.append((len(ids), time.perf_counter() - t0))
        return out


class LLMBundle:
    """A verified causal-LM bundle, opened for generation."""

    def __init__(self, path: str | Path, threads: int | None = None):
        from transformers import AutoTokenizer

        from ..models.loading import quiet_transformers

        self.path = Path(path)
        files = BundleFiles(self.path)
        try:
            self.manifest = verify_files(files)
            check_causal_lm(self.manifest, self.path)
            self._tmp = None
            folder = files.file_path(".")
            if files.is_zip:  # the runtimes want real files: unpack the verified members
                self._tmp = tempfile.TemporaryDirectory(prefix="edgedistill-bundle-")
                folder = Path(self._tmp.name)
                with zipfile.ZipFile(self.path) as z:
                    for name in self.manifest["files"]:
                        (folder / name).write_bytes(z.read(name))
        finally:
            files.close()
        folder = Path(folder).resolve()
        self.generation = json.loads((folder / GENERATION_FILE).read_text())
        quiet_transformers()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as e:
            raise ModelError(f"{self.path}: cannot load the bundle's tokenizer ({str(e)[:160]})") from None
        scheme = get_scheme(self.manifest["scheme"])
        self.lm = scheme.load(folder / self.manifest["model_file"], self.generation["max_context"], threads)
        self.stats: dict = {}

    @property
    def max_context(self) -> int:
        return int(self.generation["max_context"])

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt.strip():
            raise DataError("empty prompt: give some text")
        tok = self.tokenizer
        if chat:
            if not getattr(tok, "chat_template", None):
                raise DataError(f"{self.path}: this bundle's tokenizer has no chat template; drop --chat")
            return list(tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                tokenize=True, return_dict=False))
        ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
        bos = self.generation.get("bos_token_id")
        if self.generation.get("add_bos") and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def stream_ids(self, ids: list[int], sampling: Sampling) -> Iterator[int]:
        """Generated token ids; afterwards ``self.stats`` holds the timings."""
        timed = _Timed(self.lm)
        t0 = time.perf_counter()
        n, ttft = 0, None
        for tok in stream(timed, ids, sampling, set(self.generation["eos_token_ids"])):
            if ttft is None:
                ttft = time.perf_counter() - t0
            n += 1
            yield tok
        prefill = timed.steps[0][1] if timed.steps else 0.0
        decode = timed.steps[1:]
        decode_s = sum(s for _, s in decode)
        self.stats = {"prompt_tokens": len(ids), "new_tokens": n, "time_to_first_token_s": ttft,
                      "prefill_s": prefill, "prefill_tokens_per_s": len(ids) / prefill if prefill else None,
                      "decode_steps": len(decode), "decode_s": decode_s,
                      "decode_tokens_per_s": len(decode) / decode_s if decode_s else None,
                      "total_s": time.perf_counter() - t0}

    def stream(self, prompt: str, sampling: Sampling, chat: bool = False) -> Iterator[str]:
        """Text pieces as they are generated (each piece decodes cleanly; no half characters)."""
        ids = self.encode(prompt, chat)
        out: list[int] = []
        shown = ""
        for tok in self.stream_ids(ids, sampling):
            out.append(tok)
            text = self.tokenizer.decode(out, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
                continue
            if len(text) > len(shown) and text.startswith(shown):
                yield text[len(shown):]
            shown = text

    def generate(self, prompt: str, sampling: Sampling, chat: bool = False) -> str:
        return "".join(self.stream(prompt, sampling, chat))


def open_llm_bundle(path: str | Path, threads: int | None = None) -> LLMBundle:
    return LLMBundle(path, threads)
