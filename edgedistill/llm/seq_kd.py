"""Sequence-level KD (Kim & Rush 2016): train the student on text the teacher wrote.

The teacher continues each prompt once; the continuations are cached on disk
under a key hashing the teacher, tokenizer, prompts and generation settings
(so a changed input never reads a stale file, and a file that fails its sha256
is regenerated), then packed into fixed-length blocks like real text and
trained on with hard labels (optionally plus top-k KD on the same blocks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..errors import DataError
from ..fileutil import sha256_file, sha256_json, write_json_atomic, write_text_atomic
from ..progress import progress
from .on_policy import sample_continuation

SEQ_VERSION = 1


@dataclass
class TeacherText:
    sequences: list[list[int]]
    """Prompt + continuation token ids, one list per prompt."""
    folder: Path
    generated: int
    """How many sequences this call generated (0 = all reused from the cache)."""


def seq_cache_key(teacher_sha: str, tokenizer_sha: str, prompts: list[list[int]], gen_tokens: int,
                  temperature: float, seed: int) -> str:
    return sha256_json({"v": SEQ_VERSION, "teacher": teacher_sha, "tokenizer": tokenizer_sha, "prompts": prompts,
                        "gen": gen_tokens, "temperature": temperature, "seed": seed})


def _read(folder: Path, key: str) -> list[list[int]] | None:
    data, manifest = folder / "sequences.json", folder / "manifest.json"
    try:
        meta = json.loads(manifest.read_text())
        if meta.get("key") != key or sha256_file(data) != meta.get("sha256"):
            return None
        return json.loads(data.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def teacher_continuations(teacher, prompts: list[list[int]], *, teacher_sha: str, tokenizer_sha: str,
                          gen_tokens: int, temperature: float = 1.0, seed: int = 0,
                          root: Path | None = None) -> TeacherText:
    """The teacher's continuation of every prompt, generated once and then read from the cache."""
    if not prompts:
        raise DataError("sequence-level KD needs at least one prompt")
    key = seq_cache_key(teacher_sha, tokenizer_sha, prompts, gen_tokens, temperature, seed)
    folder = (root or cache_dir("llm-seqkd")) / key[:24]
    seqs = _read(folder, key)
    if seqs is not None:
        return TeacherText(seqs, folder, 0)
    gen = torch.Generator().manual_seed(seed)
    seqs = [sample_continuation(teacher, p, gen_tokens, temperature, gen)
            for p in progress(prompts, desc="teacher continuations", unit="seq")]
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "sequences.json"
    write_text_atomic(data, json.dumps(seqs))
    write_json_atomic(folder / "manifest.json", {"key": key, "sha256": sha256_file(data), "n": len(seqs),
                                                 "gen_tokens": gen_tokens, "temperature": temperature})
    return TeacherText(seqs, folder, len(seqs))


def pack_sequences(seqs: list[list[int]], eos: int, block_size: int) -> np.ndarray:
    """``[N, block_size]`` int32: sequences joined with EOS and cut into blocks (the tail is dropped)."""
    flat: list[int] = []
    for s in seqs:
        flat.extend(s)
        flat.append(eos)
    n = len(flat) // block_size
    if n == 0:
        raise DataError(f"the teacher's text holds {len(flat)} tokens, fewer than one block of {block_size}: "
                        "raise seq_kd_prompts or gen_tokens")
    return np.asarray(flat[: n * block_size], dtype=np.int32).reshape(n, block_size)
