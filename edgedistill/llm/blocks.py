"""Token blocks: documents tokenised, joined with EOS and cut into fixed-length windows.

Packing wastes no compute on padding and makes every position a training
target. Documents are packed per split, so no window straddles train and
held-out text. The packed ids of a (tokenizer, documents, block size) triple
are cached as one .npy file.
"""

from __future__ import annotations

import numpy as np

from ..cache import cache_dir
from ..errors import DataError
from ..fileutil import sha256_json, write_npy_atomic


def tokenizer_hash(tokenizer) -> str:
    """Identity of a tokenizer by what KD depends on: token -> id (added tokens included) and EOS.

    Hashing the vocabulary rather than tokenizer.json makes the same tokenizer match whether it was
    built in memory, saved, or converted from a GGUF.
    """
    return sha256_json({"vocab": sorted(tokenizer.get_vocab().items()), "eos": tokenizer.eos_token_id})


def pack_blocks(texts: list[str], tokenizer, block_size: int, max_blocks: int | None = None) -> np.ndarray:
    """``[N, block_size]`` int32 token ids; each text is followed by EOS, the tail is dropped."""
    if block_size < 2:
        raise DataError(f"block_size must be >= 2, got {block_size}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token to separate packed documents")
    ids: list[int] = []
    need = None if max_blocks is None else max_blocks * block_size
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
        if need is not None and len(ids) >= need:
            break
    n = len(ids) // block_size
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise DataError(f"the text holds {len(ids)} tokens, fewer than one block of {block_size}")
    return np.asarray(ids[: n * block_size], dtype=np.int32).reshape(n, block_size)


def cached_blocks(name: str, texts: list[str], ids: list[str], tokenizer, block_size: int) -> np.ndarray:
    """:func:`pack_blocks` for a named split, memoised on disk by tokenizer, document ids and size."""
    key = sha256_json({"v": 1, "tok": tokenizer_hash(tokenizer), "ids": ids, "texts": sha256_json(texts),
                       "block": block_size})[:20]
    path = cache_dir("blocks") / f"{name}-{key}.npy"
    if path.is_file():
        try:
            return np.load(path)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)
    arr = pack_blocks(texts, tokenizer, block_size)
    write_npy_atomic(path, arr)  # a unique temporary name: two runs packing the same split never clash
    return arr
