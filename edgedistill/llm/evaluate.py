"""Held-out quality of a causal LM: perplexity and next-token top-1 agreement with the teacher."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..distill.device import model_device
from ..progress import progress


@dataclass
class LMEval:
    ppl: float
    nll: float
    """Mean next-token negative log-likelihood (nats)."""
    tokens: int
    agreement: float | None = None
    """Share of positions where the model's argmax equals the teacher's (None without teacher ids)."""

    def as_dict(self) -> dict:
        return {"ppl": round(self.ppl, 3), "nll": round(self.nll, 5), "tokens": self.tokens,
                "agreement": None if self.agreement is None else round(self.agreement, 5)}


@torch.no_grad()
def evaluate_lm(model, blocks: np.ndarray, batch_size: int = 4, teacher_top1: np.ndarray | None = None,
                desc: str = "eval") -> LMEval:
    """Perplexity = exp(mean NLL of every next token inside each block); argmax agreement if given."""
    model.eval()
    dev = model_device(model)
    nll_sum, n_tok, agree = 0.0, 0, 0
    for s in progress(range(0, len(blocks), batch_size), desc=desc, unit="batch"):
        ids = torch.from_numpy(np.asarray(blocks[s : s + batch_size], dtype=np.int64)).to(dev)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        target = ids[:, 1:]
        nll_sum += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     reduction="sum").item()
        n_tok += target.numel()
        if teacher_top1 is not None:
            ref = torch.from_numpy(np.asarray(teacher_top1[s : s + batch_size, :-1], dtype=np.int64)).to(dev)
            agree += int((logits.argmax(-1) == ref).sum())
    nll = nll_sum / max(n_tok, 1)
    return LMEval(ppl=math.exp(min(nll, 700.0)), nll=nll, tokens=n_tok,
                  agreement=None if teacher_top1 is None else agree / max(n_tok, 1))


def eval_subset(blocks: np.ndarray, n: int | None) -> np.ndarray:
    """``n`` evenly spaced blocks (all if ``n`` is None or larger): a fixed, genre-mixed eval set."""
    if n is None or n >= len(blocks):
        return blocks
    return blocks[np.linspace(0, len(blocks) - 1, n).round().astype(int)]
