"""The generation loop shared by every causal-LM runtime (ONNX, ExecuTorch, eager): numpy only.

Greedy, top-k and top-p (nucleus) sampling; stops at a stop token, after
``max_new_tokens``, or when the context is full. Tokens are yielded as they
are produced so a CLI or an app can stream them. A model is anything with
``max_cache_len`` and ``step(ids, pos) -> last-position logits`` (array-like).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 = greedy."""
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def pick(logits, s: Sampling, rng: np.random.Generator) -> int:
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if s.temperature <= 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k > 0:
        kth = np.partition(logits, -min(s.top_k, logits.size))[-min(s.top_k, logits.size)]
        logits = np.where(logits < kth, -np.inf, logits)
    if s.top_p < 1.0:
        order = np.argsort(-logits, kind="stable")
        probs = _softmax(logits[order])
        # drop tokens once the mass before them already reaches top_p (the first token always stays)
        drop = np.cumsum(probs) - probs >= s.top_p
        logits[order[drop]] = -np.inf
    return int(rng.choice(logits.size, p=_softmax(logits)))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def stream(lm, prompt_ids: list[int], sampling: Sampling, stop_ids: set[int] | frozenset = frozenset()) -> Iterator[int]:
    """Yield generated token ids (stop token excluded)."""
    if not prompt_ids:
        raise DataError("empty prompt: give at least one token of text")
    if len(prompt_ids) >= lm.max_cache_len:
        raise DataError(f"the prompt is {len(prompt_ids)} tokens; this model's context holds {lm.max_cache_len} "
                        "(prompt + new tokens): shorten the prompt")
    rng = np.random.default_rng(sampling.seed)
    logits = lm.step(list(prompt_ids), 0)
    pos = len(prompt_ids)
    for i in range(sampling.max_new_tokens):
        tok = pick(logits, sampling, rng)
        if tok in stop_ids:
            return
        yield tok
        if pos >= lm.max_cache_len or i == sampling.max_new_tokens - 1:  # no step whose logits go unused
            return
        logits = lm.step([tok], pos)
        pos += 1
