"""Causal LMs that need torch: an eager HF model (the reference); the ``.pte`` one (``PteLM``) lives in
:mod:`edgedistill.backends.et` and is re-exported here.

The generation loop itself is torch-free and shared with the ONNX runtime
(:mod:`edgedistill.runtime.generation`); it is re-exported here.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.et import PteLM  # noqa: F401  (moved; re-exported)
from ..errors import DataError
from ..runtime.generation import Sampling, pick, stream

__all__ = ["EagerLM", "PteLM", "Sampling", "generate_text", "pick", "stream"]


class EagerLM:
    """Reference: the HF model recomputing the whole prefix each step (no cache; simple and exact)."""

    def __init__(self, model, max_cache_len: int):
        self.model = model.eval()
        self.max_cache_len = max_cache_len
        self.prefix: list[int] = []

    @torch.no_grad()
    def step(self, ids: list[int], pos: int) -> np.ndarray:
        self.prefix = self.prefix[:pos] + list(ids)
        dev = next(self.model.parameters()).device  # a teacher left on a GPU by the distill stage works too
        x = torch.tensor([self.prefix], dtype=torch.long, device=dev)
        return self.model(input_ids=x, use_cache=False).logits[0, -1].float().cpu().numpy()


def generate_text(lm, tokenizer, prompt: str, sampling: Sampling, chat: bool = False) -> str:
    if not prompt.strip():
        raise DataError("empty prompt: give some text")
    if chat and getattr(tokenizer, "chat_template", None):
        from .chat_data import chat_ids  # the one template path, shared with chat distillation

        ids = chat_ids(tokenizer, prompt)
    else:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    stops = {t for t in (tokenizer.eos_token_id,) if t is not None}
    return tokenizer.decode(list(stream(lm, list(ids), sampling, stops)), skip_special_tokens=True)
