"""Teacher outputs, computed once and cached on disk.

For a list of texts the teacher's pooled sentence embeddings (fp32) and,
on request, the token states of chosen layers (fp16, ragged: all tokens of all
sentences back to back, with offsets) are stored in the user cache under a
key that hashes the teacher's weights, its tokenizer, the texts and the
settings. A changed teacher or corpus gives a new key, so a stale cache is
never read. Each array is its own file, written atomically and
memory-mapped on read, so layers can be added later without recomputing the
others and large caches need no RAM.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..fileutil import sha256_file, sha256_json, write_json_atomic
from ..models.encode import length_order, pool
from ..progress import progress
from .device import model_device, on_device, to_device

CACHE_VERSION = 1


@dataclass
class TeacherTargets:
    embeddings: np.ndarray
    """``[N, H]`` float32 pooled sentence embeddings."""
    offsets: np.ndarray
    """``[N + 1]`` token offsets into the hidden arrays."""
    hidden: dict[int, np.ndarray]
    """hidden_states index (0 = embedding layer, i + 1 = block i) -> ``[tokens, H]`` float16."""
    folder: Path

    def hidden_for(self, index: int, layer: int) -> np.ndarray:
        return self.hidden[layer][self.offsets[index] : self.offsets[index + 1]]


def cache_key(teacher_ref, texts, max_length: int, pooling: str, normalize: bool) -> str:
    tok = Path(teacher_ref.folder) / "tokenizer.json"
    return sha256_json({
        "v": CACHE_VERSION,
        "teacher": teacher_ref.sha256,
        "tokenizer": sha256_file(tok) if tok.is_file() else None,
        "texts": sha256_json(list(texts)),
        "max_length": max_length,
        "pooling": pooling,
        "normalize": normalize,
    })


def _open(folder: Path, name: str, rows: int) -> np.ndarray | None:
    try:
        arr = np.load(folder / name, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return arr if arr.shape[0] == rows else None


def _new_array(folder: Path, name: str, dtype, shape) -> tuple[np.memmap, str]:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape), tmp


def teacher_targets(teacher, tokenizer, teacher_ref, texts, max_length: int, pooling: str, normalize: bool,
                    layers=(), batch_size: int = 64, desc: str = "teacher outputs", rt=None) -> TeacherTargets:
    """Teacher outputs for ``texts``; whatever is not cached yet is computed in one pass.

    With a :class:`.device.Runtime` ``rt`` the pass runs on its device with its batch size (the
    model goes back where it was afterwards); the arrays on disk are the same either way."""
    texts = list(texts)
    folder = cache_dir("teacher") / cache_key(teacher_ref, texts, max_length, pooling, normalize)[:32]
    n = len(texts)
    offsets = None
    meta = folder / "meta.json"
    if meta.is_file():
        try:
            offsets = np.asarray(json.loads(meta.read_text())["offsets"], dtype=np.int64)
        except (ValueError, KeyError, json.JSONDecodeError):
            offsets = None
    if offsets is None or len(offsets) != n + 1:
        lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        write_json_atomic(meta, {"version": CACHE_VERSION, "n": n, "teacher_sha256": teacher_ref.sha256,
                                 "offsets": offsets.tolist()})
    layers = sorted(set(layers))
    emb = _open(folder, "embeddings.npy", n)
    hidden = {layer: _open(folder, f"hidden_{layer}.npy", int(offsets[-1])) for layer in layers}
    todo = [layer for layer, arr in hidden.items() if arr is None]
    if emb is None or todo:
        with on_device(teacher, rt.device) if rt is not None else contextlib.nullcontext():
            _compute(teacher, tokenizer, texts, offsets, folder, max_length, pooling, normalize,
                     rt.teacher_batch if rt is not None else batch_size, desc, with_embeddings=emb is None, layers=todo)
        emb = _open(folder, "embeddings.npy", n)
        hidden = {layer: _open(folder, f"hidden_{layer}.npy", int(offsets[-1])) for layer in layers}
    return TeacherTargets(embeddings=emb, offsets=offsets, hidden=hidden, folder=folder)


def _batches(tokenizer, texts, max_length: int, batch_size: int, desc: str):
    """(positions, padded torch features) in length order, so each batch pads little (a GPU's large
    batches pad as little as the CPU's small ones)."""
    order = length_order(tokenizer, texts, max_length)
    for start in progress(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        yield idx, tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")


def _compute(teacher, tokenizer, texts, offsets, folder, max_length, pooling, normalize, batch_size, desc,
             with_embeddings: bool, layers: list[int]) -> None:
    """One teacher pass writing the missing arrays to temporary files, renamed when complete."""
    import torch

    n, hsize = len(texts), teacher.config.hidden_size
    arrays: dict[str, tuple[np.memmap, str]] = {}
    try:
        if with_embeddings:
            arrays["embeddings.npy"] = _new_array(folder, "embeddings.npy", np.float32, (n, hsize))
        for layer in layers:
            arrays[f"hidden_{layer}.npy"] = _new_array(folder, f"hidden_{layer}.npy", np.float16,
                                                       (int(offsets[-1]), hsize))
        lengths = np.diff(offsets)
        dev = model_device(teacher)
        with torch.inference_mode():
            for idx, feats in _batches(tokenizer, texts, max_length, batch_size, desc):
                feats = to_device(feats, dev)
                out = teacher(**feats, output_hidden_states=bool(layers))
                if with_embeddings:
                    arrays["embeddings.npy"][0][idx] = pool(out.last_hidden_state, feats["attention_mask"],
                                                            pooling, normalize).float().cpu().numpy()
                for layer in layers:
                    dest = arrays[f"hidden_{layer}.npy"][0]
                    states = out.hidden_states[layer].to(torch.float16).cpu().numpy()
                    for row, i in enumerate(idx):
                        dest[offsets[i] : offsets[i + 1]] = states[row, : lengths[i]]
        for name, (arr, tmp) in arrays.items():
            arr.flush()
            os.replace(tmp, folder / name)
    finally:
        for _, tmp in arrays.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def teacher_logits(model, tokenizer, teacher_ref, texts, max_length: int, batch_size: int = 64,
                   desc: str = "teacher logits", rt=None) -> np.ndarray:
    """Classifier logits ``[N, C]`` (float32) for ``texts``, cached under the same kind of key.

    The key hashes the teacher's weights and tokenizer and the texts, so a changed
    teacher or corpus computes afresh instead of reading stale logits.
    """
    import torch

    texts = list(texts)
    folder = cache_dir("teacher") / ("logits-" + cache_key(teacher_ref, texts, max_length, "logits", False)[:32])
    n, classes = len(texts), model.config.num_labels
    arr = _open(folder, "logits.npy", n)
    if arr is not None and arr.shape == (n, classes):
        return arr
    folder.mkdir(parents=True, exist_ok=True)
    dest, tmp = _new_array(folder, "logits.npy", np.float32, (n, classes))
    if rt is not None:
        batch_size = rt.teacher_batch
    try:
        with torch.inference_mode(), on_device(model, rt.device) if rt is not None else contextlib.nullcontext():
            dev = model_device(model)
            for idx, feats in _batches(tokenizer, texts, max_length, batch_size, desc):
                dest[idx] = model(**to_device(feats, dev)).logits.float().cpu().numpy()
        dest.flush()
        os.replace(tmp, folder / "logits.npy")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return _open(folder, "logits.npy", n)
