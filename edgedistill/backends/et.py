"""ExecuTorch: ``.pte`` programs, run with the ExecuTorch Python runtime.

That runtime links libtorch, so every torch / executorch import here stays
inside a function: importing this module is torch-free, running a program is not.

Encoder programs are fixed-shape (batch 1, ``max_length`` tokens; see
:mod:`edgedistill.export.executorch`), so each row is padded or clipped to that
length and run on its own. The XNNPACK threadpool can only be sized before the
first program is loaded: resizing it afterwards aborts the process (deps.md),
so later requests for another thread count keep the first one.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Runner, require_packages

NAME = "executorch"
LABEL = "executorch"
SUFFIX = ".pte"
EXTRA = "executorch"
TORCH_FREE = False
RUNTIME_MODULES = ("executorch.extension.pybindings.portable_lib", "executorch.runtime", "executorch.kernels.quantized")
MAGIC = b"ET"
"""ExecuTorch programs are flatbuffers whose file identifier (bytes 4-7) starts with 'ET'."""
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
"""Encoder program inputs are a prefix-ordered subset of these (see export.onnx.input_names_for)."""
ENCODER_OUTPUTS = ["last_hidden_state", "sentence_embedding"]
_state = {"loaded": False, "threads": None}


def require(where: str = "this program", hint: str = "", export: bool = False) -> None:
    """Running a program needs executorch (and so torch); exporting one needs torchao as well."""
    if export:
        require_packages(("executorch", "torchao"), where, EXTRA, " (executorch==1.5.1, torchao==0.18.0)", hint)
    else:
        require_packages(("executorch", "torch"), f"{where}: running an ExecuTorch (.pte) program", EXTRA,
                         ", which needs torch", hint)


def is_program(path: str | Path) -> bool:
    with Path(path).open("rb") as f:  # not open(): this module defines its own
        head = f.read(8)
    return len(head) == 8 and head[4:6] == MAGIC


def set_threads(threads: int) -> int:
    """Size the XNNPACK threadpool once per process; returns the count in effect."""
    from executorch.extension.pybindings import portable_lib

    if not _state["loaded"] and _state["threads"] is None:
        portable_lib._unsafe_reset_threadpool(max(1, int(threads)))
        _state["threads"] = int(threads)
    return portable_lib._threadpool_get_thread_count()


def load_method(path: Path, threads: int = 1):
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such .pte file")
    require(str(path))
    set_threads(threads)
    # Registers the int8 embedding kernels; without it a quantised program fails to load with
    # "Missing operator: quantized_decomposed::embedding_byte.out".
    import executorch.kernels.quantized  # noqa: F401
    from executorch.runtime import Runtime

    _state["loaded"] = True
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as e:  # the pybinding raises RuntimeError/ValueError with a hex error code
        text = " ".join(str(e).split())[:200]
        raise ModelError(f"{path}: the ExecuTorch runtime cannot load the program ({text}); re-export it with "
                         "'edgedistill export' using this executorch version") from None
    if method is None:
        raise ModelError(f"{path}: the program has no 'forward' method")
    return method


def _fit(a: np.ndarray, length: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64).reshape(-1)[:length]
    return np.pad(a, (0, length - len(a)))


def pte_outputs(path: str | Path, threads: int = 1):
    """``run(feed) -> [every output, rows concatenated]`` for token arrays ``[B, T]`` (any T; padded or clipped)."""
    import torch

    method = load_method(Path(path), threads)
    meta = method.metadata
    names = INPUT_ORDER[: meta.num_inputs()]
    length = int(meta.input_tensor_meta(0).sizes()[-1])

    def run(feed) -> list[np.ndarray]:
        feed = {k: np.asarray(v) for k, v in dict(feed).items()}
        missing = [n for n in names if n != "token_type_ids" and n not in feed]
        if missing:
            raise ModelError(f"{path}: input {missing[0]!r} missing (the program takes {', '.join(names)})")
        rows = []
        for i in range(len(feed["input_ids"])):
            args = [torch.from_numpy(_fit(feed[n][i] if n in feed else np.zeros(length), length)).view(1, length)
                    for n in names]
            rows.append([o.numpy().copy() for o in method.execute(args)])  # the runtime may reuse its buffers
        return [np.concatenate(col, axis=0) for col in zip(*rows, strict=True)]

    run.num_outputs = meta.num_outputs()
    return run


def default_output_names(n: int) -> list[str]:
    """Output names of a program whose bundle manifest is not at hand, by edgedistill's export conventions:
    an encoder returns (token states, sentence embedding); a classifier its exits' logits, then the final ones."""
    if n == len(ENCODER_OUTPUTS):
        return list(ENCODER_OUTPUTS)
    return [f"output_{i}" for i in range(n - 1)] + ["logits"]


def pte_runner(path: str | Path, threads: int = 1):
    """``run(feed) -> [B, H]``: the program's last output (the sentence embedding of an encoder, the final
    head's logits of a classifier)."""
    run = pte_outputs(path, threads)
    return lambda feed: run(feed)[-1]


def open(model: bytes | str | Path, threads: int = 1, where: str | None = None, outputs: list[str] | None = None,
         hint: str = "", **_) -> Runner:
    """A :class:`Runner`; ``outputs`` names the program's outputs (default: the encoder's two)."""
    require(where or ("this bundle" if isinstance(model, bytes) else str(model)), hint)
    if isinstance(model, bytes):  # zip bundle: the ExecuTorch loader wants a file
        tmp = tempfile.NamedTemporaryFile(suffix=".pte", delete=False)
        tmp.write(model)
        tmp.close()
        model = Path(tmp.name)
    raw = pte_outputs(model, threads)
    names = list(outputs or default_output_names(raw.num_outputs))
    lock = threading.Lock()  # an ExecuTorch method is not safe to execute from two threads at once

    def run(feed) -> dict[str, np.ndarray]:
        with lock:
            out = raw(feed)
        if len(out) != len(names):
            if len(out) != len(ENCODER_OUTPUTS):
                raise ModelError(f"{where or model}: the program returns {len(out)} outputs, the bundle names "
                                 f"{len(names)} ({', '.join(names)})")
            return dict(zip(ENCODER_OUTPUTS, out, strict=True))  # a manifest naming only the embedding
        return dict(zip(names, out, strict=True))

    return Runner(NAME, run, list(INPUT_ORDER), names, memory)


def memory() -> dict:
    return {"weights_bytes": None, "weights_source": None, "arena_bytes": None,
            "arena_note": "the ExecuTorch runtime does not report its memory here; see peak RSS"}


LLM_CUSTOM_OPS = b"llama::custom_sdpa"
"""An operator name that only programs exported with ExecuTorch's LLM kernels carry (see load_llm_custom_ops)."""


def needs_llm_custom_ops(path: str | Path) -> bool:
    """Whether the program calls ExecuTorch's ``llama::`` LLM kernels (its operator table names them)."""
    import mmap

    with Path(path).open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return m.find(LLM_CUSTOM_OPS) >= 0


def load_llm_custom_ops() -> None:
    """Register ExecuTorch's LLM kernels (``llama::custom_sdpa``, ``llama::update_cache``) for export and for the
    Python runtime; ~3 s of imports, so only for programs that need them."""
    try:
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    except (ImportError, OSError, AssertionError) as e:
        raise ModelError(f"ExecuTorch's LLM kernels (llama::custom_sdpa) cannot be loaded: {e}") from None


def open_lm(path: str | Path, max_cache_len: int, threads: int | None = None) -> PteLM:
    if threads:
        set_threads(threads)  # XNNPACK's pool, before the first program loads
    return PteLM(path, max_cache_len)


class PteLM:
    """A loaded ``.pte`` causal LM (static KV cache); ``step(ids, pos)`` feeds tokens at positions pos.. and
    returns the last logits."""

    def __init__(self, path: str | Path, max_cache_len: int):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: .pte file not found")
        require(str(path))
        import executorch.kernels.quantized  # noqa: F401  (registers quantized_decomposed::embedding_byte)
        from executorch.runtime import Runtime

        # The wheel's llama:: kernels are ATen code on torch's OpenMP pool; beside XNNPACK's own pool, two
        # pools of spinning threads on the same cores halved 2-thread decode (student 351 -> 206 tok/s on 2
        # cores). So those programs execute with torch at one thread: XNNPACK keeps the cores for the GEMMs.
        self.serial_torch = needs_llm_custom_ops(path)
        if self.serial_torch:
            load_llm_custom_ops()
        _state["loaded"] = True
        try:
            self.method = Runtime.get().load_program(path).load_method("forward")
        except Exception as e:
            raise ModelError(f"{path}: cannot load the ExecuTorch program ({str(e)[:160]})") from None
        self.max_cache_len = max_cache_len

    def step(self, ids: list[int], pos: int) -> np.ndarray:
        import torch

        x = torch.tensor([ids], dtype=torch.long)
        cp = torch.arange(pos, pos + len(ids), dtype=torch.long)
        prev = torch.get_num_threads() if self.serial_torch else 1
        if prev != 1:
            torch.set_num_threads(1)
        try:
            out = self.method.execute([x, cp])
        finally:
            if prev != 1:
                torch.set_num_threads(prev)
        return out[0][0, -1].float().numpy().copy()  # the runtime may reuse its buffer
