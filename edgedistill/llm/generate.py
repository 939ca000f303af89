"""Token generation over an exported ``.pte`` (static KV cache) or an eager HF model.

Greedy, top-k and top-p (nucleus) sampling; stops at a stop token, after
``max_new_tokens``, or when the context is full. Tokens are yielded as they
are produced so a CLI can stream them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError, ModelError


class PteLM:
    """A loaded ``.pte`` causal LM; ``step(ids, pos)`` feeds tokens at positions pos.. and returns the last logits."""

    def __init__(self, path: str | Path, max_cache_len: int):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: .pte file not found")
        import executorch.kernels.quantized  # noqa: F401  (registers quantized_decomposed::embedding_byte)
        from executorch.runtime import Runtime

        try:
            self.method = Runtime.get().load_program(path).load_method("forward")
        except Exception as e:
            raise ModelError(f"{path}: cannot load the ExecuTorch program ({str(e)[:160]})") from None
        self.max_cache_len = max_cache_len

    def step(self, ids: list[int], pos: int) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long)
        cp = torch.arange(pos, pos + len(ids), dtype=torch.long)
        return self.method.execute([x, cp])[0][0, -1].float()


class EagerLM:
    """Reference: the HF model recomputing the whole prefix each step (no cache; simple and exact)."""

    def __init__(self, model, max_cache_len: int):
        self.model = model.eval()
        self.max_cache_len = max_cache_len
        self.prefix: list[int] = []

    @torch.no_grad()
    def step(self, ids: list[int], pos: int) -> torch.Tensor:
        self.prefix = self.prefix[:pos] + list(ids)
        x = torch.tensor([self.prefix], dtype=torch.long)
        return self.model(input_ids=x, use_cache=False).logits[0, -1].float()


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 = greedy."""
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def pick(logits: torch.Tensor, s: Sampling, gen: torch.Generator) -> int:
    if s.temperature <= 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k > 0:
        kth = logits.topk(min(s.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_l, order = logits.sort(descending=True)
        probs = sorted_l.softmax(-1)
        # drop tokens once the mass before them already reaches top_p (the first token always stays)
        drop = probs.cumsum(-1) - probs >= s.top_p
        logits[order[drop]] = float("-inf")
    return int(torch.multinomial(logits.softmax(-1), 1, generator=gen))


def stream(lm, prompt_ids: list[int], sampling: Sampling, stop_ids: set[int] | frozenset = frozenset()) -> Iterator[int]:
    """Yield generated token ids (stop token excluded)."""
    if not prompt_ids:
        raise DataError("empty prompt: give at least one token of text")
    if len(prompt_ids) >= lm.max_cache_len:
        raise DataError(f"the prompt is {len(prompt_ids)} tokens; this model's context holds {lm.max_cache_len} "
                        "(prompt + new tokens): shorten the prompt")
    gen = torch.Generator().manual_seed(sampling.seed)
    logits = lm.step(list(prompt_ids), 0)
    pos = len(prompt_ids)
    for i in range(sampling.max_new_tokens):
        tok = pick(logits, sampling, gen)
        if tok in stop_ids:
            return
        yield tok
        if pos >= lm.max_cache_len or i == sampling.max_new_tokens - 1:  # no step whose logits go unused
            return
        logits = lm.step([tok], pos)
        pos += 1


def generate_text(lm, tokenizer, prompt: str, sampling: Sampling, chat: bool = False) -> str:
    if not prompt.strip():
        raise DataError("empty prompt: give some text")
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
    else:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    stops = {t for t in (tokenizer.eos_token_id,) if t is not None}
    return tokenizer.decode(list(stream(lm, list(ids), sampling, stops)), skip_special_tokens=True)
