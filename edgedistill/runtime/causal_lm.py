"""``CausalLM``: open a verified causal-LM bundle and generate text, streaming.

ONNX bundles (``fp32`` / ``int8-weight`` / ``int4-weight`` / ``int8-dynamic``) run on
onnxruntime + numpy + tokenizers (+ jinja2 for the chat template): no torch.
ExecuTorch bundles (``et-fp32`` / ``et-8da4w``) need the executorch package, whose
Python runtime links libtorch; it is imported only for them. Both open through
:mod:`edgedistill.backends`.

    from edgedistill.runtime import CausalLM, Sampling
    lm = CausalLM.open("runs/llm/bundles/int8-weight")
    for piece in lm.stream("What is a computer?", Sampling(max_new_tokens=48), chat=True):
        print(piece, end="", flush=True)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .. import backends
from ..errors import DataError, ModelError
from .format import BundleFiles, verify_files
from .generation import Sampling, stream

KIND = "causal-lm"
GENERATION_FILE = "generation.json"


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


class ChatTemplate:
    """The bundle's Jinja chat template, rendered the way transformers renders it (sandboxed, trimmed blocks)."""

    def __init__(self, source: str, special: dict[str, str]):
        try:
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ModelError("the chat template needs jinja2: pip install 'edgedistill[runtime]'") from None

        def raise_exception(message):
            raise DataError(f"the chat template refused the conversation: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        self.template = env.from_string(source)
        self.special = special

    def render(self, messages: list[dict]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special)


def _special_tokens(config: dict) -> dict[str, str]:
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        v = config.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        if isinstance(v, str):
            out[key] = v
    return out


def _load_model(folder: Path, manifest: dict, max_context: int, threads: int, where: str):
    name = manifest.get("backend", "onnxruntime")
    backend = backends.get(name) if name in backends.BACKENDS else None
    if backend is None or not hasattr(backend, "open_lm"):
        lm = [n for n in backends.BACKENDS if hasattr(backends.get(n), "open_lm")]
        raise ModelError(f"{where}: backend {name!r} does not run causal LMs here (those that do: {', '.join(lm)})")
    backend.require(where, "" if backend.TORCH_FREE else "for a torch-free app export it with 'edgedistill llm "
                    "export --scheme int8-weight' (or fp32 / int4-weight: the ONNX schemes)")
    return backend.open_lm(folder / manifest["model_file"], max_context, threads)


class CausalLM:
    """A verified causal-LM bundle, opened for generation; ``stats`` holds the last call's timings."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, expect_id: str | None = None,
                 public_key: str | os.PathLike | None = None):
        from tokenizers import Tokenizer

        from .bundle import bundle_threads, check_threads

        check_threads(threads)
        self.path = Path(path)
        files = BundleFiles(self.path)
        try:
            self.manifest = verify_files(files, expect_id, public_key)
            self.id = files.id
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
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # tokenizers raises plain Exception for malformed JSON
            raise ModelError(f"{self.path}: cannot load the bundle's tokenizer ({' '.join(str(e).split())[:160]})") \
                from None
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        template_file = folder / "chat_template.jinja"
        source = template_file.read_text() if template_file.is_file() else config.get("chat_template")
        self._template_source, self._special = (source if isinstance(source, str) else None), _special_tokens(config)
        self._template: ChatTemplate | None = None
        threads = bundle_threads(self.manifest, threads)
        self.lm = _load_model(folder, self.manifest, self.max_context, threads, str(self.path))
        self.stats: dict = {}

    @classmethod
    def open(cls, path: str | os.PathLike, threads: int | None = None, expect_id: str | None = None,
             public_key: str | os.PathLike | None = None) -> CausalLM:
        """Verify every file's sha256, load the tokenizer and the model.

        ``threads``: intra-op threads (default: the bundle's target thread count, capped at this machine's cores).
        ``expect_id`` / ``public_key``: pin the bundle id / require a signature, as for :meth:`Bundle.open`.
        """
        return cls(path, threads, expect_id, public_key)

    @property
    def max_context(self) -> int:
        return int(self.generation["max_context"])

    @property
    def has_chat_template(self) -> bool:
        return self._template_source is not None

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt.strip():
            raise DataError("empty prompt: give some text")
        if chat:
            if not self.has_chat_template:
                raise DataError(f"{self.path}: this bundle's tokenizer has no chat template; drop --chat")
            if self._template is None:
                self._template = ChatTemplate(self._template_source, self._special)
            # the template writes the special tokens itself; the tokenizer must not add more
            text = self._template.render([{"role": "user", "content": prompt}])
            return list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        ids = list(self.tokenizer.encode(prompt, add_special_tokens=False).ids)
        bos = self.generation.get("bos_token_id")
        if self.generation.get("add_bos") and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

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

    def stream(self, prompt: str, sampling: Sampling | None = None, chat: bool = False) -> Iterator[str]:
        """Text pieces as they are generated (each piece decodes cleanly; no half characters)."""
        ids = self.encode(prompt, chat)
        out: list[int] = []
        shown = ""
        for tok in self.stream_ids(ids, sampling or Sampling()):
            out.append(tok)
            text = self.decode(out)
            if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
                continue
            if len(text) > len(shown) and text.startswith(shown):
                yield text[len(shown):]
            shown = text

    def generate(self, prompt: str, sampling: Sampling | None = None, chat: bool = False) -> str:
        return "".join(self.stream(prompt, sampling, chat))
