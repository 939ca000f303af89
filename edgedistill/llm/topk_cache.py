"""The teacher's top-k next-token log-probs, computed once and cached on disk in shards.

One folder per (teacher weights sha256, tokenizer, k, format version); inside, each shard of
``shard_blocks`` consecutive blocks is named by the hash of its own tokens: a pair of .npy files
(fp16 log-probs, int32 ids) and a ``.json`` with their sha256, written last. So a changed teacher,
tokenizer or k never reads a stale file, a run on more (or fewer) blocks of the same text reuses every
shard it shares with an earlier run (``max_train_blocks`` 256 -> 1,024 -> all computes only the new
blocks), a shard that is missing or fails its hash is recomputed (an interrupted run resumes where it
stopped, a damaged file is never used), and two runs filling the same folder at once never write the
same file name half-way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..distill.device import model_device
from ..fileutil import sha256_bytes, sha256_file, sha256_json, write_json_atomic, write_npy_atomic
from ..progress import progress

CACHE_VERSION = 2
"""2: shards named by their tokens' hash (1: one folder per exact block array)."""
TOPK_CHUNK = 2048
"""Positions per chunk of full-vocabulary teacher logits (2048 x 49k fp32 = 0.4 GB, twice that with the
log-softmax); batches up to this many positions (the CPU's 4 x 256) take one pass as before."""
GPU_BATCH = 32
"""Blocks per teacher forward on a GPU (the CPU keeps the caller's batch)."""


@dataclass
class TopK:
    logp: np.ndarray
    """``[N, T, k]`` float16 teacher log-probs (T = 1) of its k most likely next tokens."""
    idx: np.ndarray
    """``[N, T, k]`` int32 token ids."""
    folder: Path
    computed_shards: int
    """How many shards this call had to compute (0 = all reused)."""

    def mean_top_mass(self) -> float:
        return float(np.exp(self.logp.astype(np.float32)).sum(-1).mean())


def cache_key(teacher_sha: str, tokenizer_sha: str, k: int) -> str:
    """The folder's key: what the targets depend on besides the tokens themselves."""
    return sha256_json({"v": CACHE_VERSION, "teacher": teacher_sha, "tokenizer": tokenizer_sha, "k": k})


def shard_key(blocks: np.ndarray) -> str:
    """A shard's file stem: the hash of its tokens (as int32) and their shape."""
    arr = np.ascontiguousarray(blocks, dtype=np.int32)
    return sha256_json({"blocks": sha256_bytes(arr.tobytes()), "shape": list(arr.shape)})[:32]


@torch.no_grad()
def teacher_topk(model, ids: torch.Tensor, k: int, chunk: int = TOPK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs fp16, ids int32), each ``[B, T, k]``, of the teacher's k most likely next tokens.

    Runs on the model's device and returns tensors there. The full-vocabulary logits are built
    ``chunk`` positions at a time from the final hidden states, so at a GPU batch (32 x 512 x 49k)
    they never exist whole (also for a head that maps each position alone and says so with ``per_position``,
    as a trimmed teacher's first-piece head does); other heads fall back to one pass."""
    ids = ids.to(model_device(model))
    body, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    per_position = isinstance(head, torch.nn.Linear) or getattr(head, "per_position", False)
    plain_head = per_position and not getattr(model.config, "final_logit_softcapping", None)
    small = ids.numel() <= chunk  # the CPU's 4 x 256 batches: one pass, exactly as before
    if small or body is None or not plain_head or getattr(model.config, "logit_scale", None):
        logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), dim=-1)
        vals, idx = logp.topk(k, dim=-1)
        return vals.half(), idx.int()
    return head_topk(head, body(input_ids=ids, use_cache=False).last_hidden_state, k, chunk)


@torch.no_grad()
def head_topk(head, hidden: torch.Tensor, k: int, chunk: int = TOPK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`teacher_topk` from the final (normed) hidden states ``[B, T, H]`` and the output layer."""
    b, t, h = hidden.shape
    flat = hidden.reshape(b * t, h)
    vals, idx = [], []
    for start in range(0, b * t, chunk):
        logp = torch.log_softmax(head(flat[start : start + chunk]).float(), dim=-1)
        v, i = logp.topk(k, dim=-1)
        vals.append(v.half())
        idx.append(i.int())
    return torch.cat(vals).reshape(b, t, k), torch.cat(idx).reshape(b, t, k)


def _shard_ok(folder: Path, stem: str) -> bool:
    try:
        files = json.loads((folder / f"{stem}.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((folder / f).is_file() and sha256_file(folder / f) == h for f, h in files.items())


def build_topk_cache(model, blocks: np.ndarray, *, teacher_sha: str, tokenizer_sha: str, k: int = 32,
                     batch_size: int = 4, shard_blocks: int = 64, root: Path | None = None) -> TopK:
    """The teacher's top-k for every block, reusing verified shards and computing the rest."""
    folder = (root or cache_dir("llm-topk")) / cache_key(teacher_sha, tokenizer_sha, k)[:24]
    folder.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, blocks.shape[0], shard_blocks))
    stems = [shard_key(blocks[s : s + shard_blocks]) for s in starts]
    todo = [(s, stem) for s, stem in zip(starts, stems) if not _shard_ok(folder, stem)]
    if todo:
        model.eval()
        if model_device(model).type == "cuda":
            batch_size = max(batch_size, GPU_BATCH)
        for s, stem in progress(todo, desc=f"teacher top-{k}", unit="shard"):
            chunk = torch.from_numpy(blocks[s : s + shard_blocks].astype(np.int64))
            parts = [teacher_topk(model, chunk[b : b + batch_size], k) for b in range(0, len(chunk), batch_size)]
            # saved from the CPU: a cache filled on a GPU is the same files as one filled on a CPU
            logp = torch.cat([p[0].cpu() for p in parts]).numpy()
            idx = torch.cat([p[1].cpu() for p in parts]).numpy()
            files = {f"{stem}.{what}.npy": sha256_file(write_npy_atomic(folder / f"{stem}.{what}.npy", arr))
                     for what, arr in (("logp", logp), ("idx", idx))}
            write_json_atomic(folder / f"{stem}.json", {"k": k, "teacher": teacher_sha, "tokenizer": tokenizer_sha,
                                                        "shape": list(chunk.shape), "files": files})
    logp = np.concatenate([np.load(folder / f"{stem}.logp.npy", mmap_mode="r") for stem in stems])
    idx = np.concatenate([np.load(folder / f"{stem}.idx.npy", mmap_mode="r") for stem in stems])
    return TopK(logp=logp, idx=idx, folder=folder, computed_shards=len(todo))
