"""One student, one teacher, one [distill] mode: build what the mode needs and train.

``kd`` caches the teacher's top-k on the train blocks; ``nokd`` needs nothing;
``on_policy`` needs the live teacher, prompts and (for its off-policy share)
the top-k cache; ``seq_kd`` has the teacher continue prompts once (cached) and
trains on that text, with hard labels and optionally top-k KD on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..progress import say
from .chatterbot import load_prompts
from .on_policy import chat_prompt_ids, text_prompts
from .recipe import LLMDistillSpec
from .seq_kd import pack_sequences, teacher_continuations
from .topk_cache import build_topk_cache
from .train import train_causal


@dataclass
class Tutor:
    model: object
    sha: str
    """Weights hash: the cache identity of this teacher (a file sha256, or a hash of an in-memory model)."""
    tokenizer: object
    tokenizer_sha: str


def topk_of(tutor: Tutor, blocks: np.ndarray, k: int):
    return build_topk_cache(tutor.model, blocks, teacher_sha=tutor.sha, tokenizer_sha=tutor.tokenizer_sha, k=k)


def make_prompts(dist: LLMDistillSpec, tok, train: np.ndarray, n: int) -> list[list[int]]:
    """``n`` prompt id lists: real-text prefixes of the train split, or (up to ``n``) chatterbot user turns."""
    if dist.prompts == "chatterbot":
        texts = [p.text for p in load_prompts()]
        ids = chat_prompt_ids(tok, texts, dist.prompt_tokens)
        order = np.random.default_rng(dist.seed).permutation(len(ids))[:n]
        return [ids[i] for i in sorted(order)]
    return text_prompts(train, n, dist.prompt_tokens, seed=dist.seed)


def teach(student, tutor: Tutor, train: np.ndarray, val: np.ndarray, dist: LLMDistillSpec,
          val_teacher_top1: np.ndarray | None = None, hidden_map: dict[int, int] | None = None, log_path=None,
          store=None, chat=None):
    """(best student, TrainResult, extra report fields) for ``dist.mode``.

    ``hidden_map`` (student block -> tutor block) feeds ``hidden_weight``'s hidden-state transfer; ``store``
    (a checkpoint GenerationStore) makes the training resumable; ``chat`` (a :class:`.chat_data.ChatMix`)
    mixes chat prompts with the teacher's answers into every batch, and in ``on_policy`` mode its prompts
    are the ones the student continues."""
    cfg = dist.train_config()
    k = dist.top_k
    extra: dict = {}
    live = {"teacher": tutor.model, "hidden_map": hidden_map} if cfg.hidden_weight > 0 else {}
    log = {"log_path": log_path, "store": store, "chat": chat}
    if live:
        extra["hidden_map"] = {str(i): j for i, j in hidden_map.items()}
    if dist.mode == "kd":
        if live:  # the hidden-state transfer runs the teacher every step: its top-k comes from that pass
            say(f"teacher top-{k}: from the live teacher's pass of each step (no cache)")
            topk = None
        else:
            topk = topk_of(tutor, train, k)
            say(f"teacher top-{k}: mean probability mass inside the top {k}: {topk.mean_top_mass():.3f}")
        return (*train_causal(student, train, val, cfg, topk=topk, val_teacher_top1=val_teacher_top1, **live, **log),
                extra)
    if dist.mode == "nokd":
        return (*train_causal(student, train, val, cfg, val_teacher_top1=val_teacher_top1, **live, **log), extra)
    if dist.mode == "on_policy":
        topk = topk_of(tutor, train, k) if dist.on_policy_fraction < 1 else None
        if chat is not None and chat.examples:  # GKD on the chat prompts, in their template
            prompts, source = [e.prompt for e in chat.examples], "chat"
        else:
            prompts, source = make_prompts(dist, tutor.tokenizer, train, 512), dist.prompts
        extra = {"prompts": source, "n_prompts": len(prompts), "gen_tokens": dist.gen_tokens,
                 "on_policy_fraction": dist.on_policy_fraction}
        return (*train_causal(student, train, val, cfg, topk=topk, val_teacher_top1=val_teacher_top1,
                              teacher=tutor.model, prompts=prompts, top_k=k, **log), extra)
    # seq_kd
    prompts = make_prompts(dist, tutor.tokenizer, train, dist.seq_kd_prompts)
    text = teacher_continuations(tutor.model, prompts, teacher_sha=tutor.sha, tokenizer_sha=tutor.tokenizer_sha,
                                 gen_tokens=dist.gen_tokens, temperature=dist.gen_temperature, seed=dist.seed)
    blocks = pack_sequences(text.sequences, tutor.tokenizer.eos_token_id, train.shape[1])
    say(f"seq_kd: {len(text.sequences)} teacher continuations ({text.generated} generated now, the rest cached) "
        f"-> {len(blocks)} blocks")
    extra = {"prompts": dist.prompts, "n_prompts": len(prompts), "gen_tokens": dist.gen_tokens,
             "seq_blocks": len(blocks), "seq_cache": str(text.folder)}
    if dist.seq_kd_topk:
        topk = topk_of(tutor, blocks, k)
        res = train_causal(student, blocks, val, replace(cfg, mode="kd", ce_weight=max(cfg.ce_weight, 1.0)),
                           topk=topk, val_teacher_top1=val_teacher_top1, **log)
    else:
        res = train_causal(student, blocks, val, replace(cfg, mode="nokd"), val_teacher_top1=val_teacher_top1, **log)
    return (*res, extra)
