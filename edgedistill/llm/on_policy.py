"""On-policy distillation (GKD, Agarwal et al. 2024): the student writes, the teacher grades every token it wrote.

Off-policy KD only shows the student prefixes of real text; at generation time
it conditions on its own (worse) tokens, a train/test mismatch that compounds
over a reply. Here a share of each batch is student-sampled continuations of a
prompt; the teacher scores those sequences online and the token loss is taken
only at the positions that predict a generated token. Continuations are short
(``gen_tokens``) so the CPU cost of sampling stays bounded.
"""

from __future__ import annotations

import numpy as np
import torch

from ..distill.device import model_device
from .losses import chunked_token_loss
from .qat import output_weight
from .topk_cache import teacher_topk


@torch.no_grad()
def sample_continuation(model, prompt: list[int], n_tokens: int, temperature: float = 1.0,
                        generator: torch.Generator | None = None) -> list[int]:
    """``prompt`` + ``n_tokens`` tokens sampled from ``model`` (greedy if temperature <= 0), KV-cached.

    Never stops early, so every continuation has the same length and cost.
    """
    was_training = model.training
    model.eval()
    dev = model_device(model)
    try:
        ids = torch.tensor([prompt], dtype=torch.long, device=dev)
        out = model(input_ids=ids, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1].float()
        seq = list(prompt)
        for i in range(n_tokens):
            if temperature <= 0:
                tok = int(logits.argmax())
            else:
                # drawn on the CPU with the CPU generator: the same seed gives the same text on any device
                probs = (logits / temperature).softmax(-1).cpu()
                tok = int(torch.multinomial(probs, 1, generator=generator))
            seq.append(tok)
            if i + 1 < n_tokens:
                out = model(input_ids=torch.tensor([[tok]], device=dev), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1].float()
    finally:
        model.train(was_training)
    return seq


def generated_positions(prompt_len: int, total_len: int) -> slice:
    """Positions whose next-token prediction is a generated token: prompt_len - 1 .. total_len - 2."""
    return slice(prompt_len - 1, total_len - 1)


def on_policy_loss(student, teacher, seq: list[int], prompt_len: int, *, k: int, loss: str,
                   temperature: float = 1.0, tail: str = "bucket", chunk: int = 512, **params) -> torch.Tensor:
    """Token loss of ``student`` against the teacher's top-k on the generated part of ``seq`` only."""
    ids = torch.tensor([seq], dtype=torch.long, device=model_device(student))
    t_logp, t_idx = (t.to(ids.device) for t in teacher_topk(teacher, ids, k))
    where = generated_positions(prompt_len, len(seq))
    hidden = student.model(input_ids=ids, use_cache=False).last_hidden_state[0, where]
    hidden, head = output_weight(student, hidden)
    parts = chunked_token_loss(hidden, head, t_logp=t_logp[0, where], t_idx=t_idx[0, where],
                               loss=loss, temperature=temperature, tail=tail, chunk=chunk, **params)
    return parts.kd


def text_prompts(blocks: np.ndarray, n: int, prompt_tokens: int, seed: int = 0) -> list[list[int]]:
    """``n`` prompts of ``prompt_tokens`` real tokens, from random blocks at random offsets (fixed by seed)."""
    prompt_tokens = min(prompt_tokens, blocks.shape[1] - 1)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(blocks), n)
    offs = rng.integers(0, blocks.shape[1] - prompt_tokens + 1, n)
    return [blocks[r, o : o + prompt_tokens].astype(int).tolist() for r, o in zip(rows, offs, strict=True)]


def chat_prompt_ids(tokenizer, texts: list[str], max_tokens: int) -> list[list[int]]:
    """User turns in the tokenizer's chat template (plain text if it has none), cut to ``max_tokens``."""
    from .chat_data import chat_ids

    out = []
    for text in texts:
        ids = chat_ids(tokenizer, text)
        if ids:
            out.append(list(ids)[-max_tokens:])
    return out
