"""Vocabulary trimming for causal-LM students: keep the tokens the training text used, drop the rest.

A small decoder's output matrix is a fixed per-token cost (SmolLM2's 49,152 x 576 head is ~35% of a
15-layer student's decode work) and its embedding table a large share of the file. ``[student]
output_vocab = "trim"`` keeps the tokens seen in the training split (prose and chat), every added/special
token and every single-character (byte-level) token, and renumbers them densely (old order kept): the
student becomes an ordinary HF checkpoint with a smaller ``vocab_size`` and its own ``tokenizer.json``,
so export, the runtimes, ``generate`` and the native runner need nothing new.

Why text still round-trips: a byte-level BPE builds each token by merging two smaller ones. The kept set
is closed under those parents and the trimmed tokenizer keeps only the merges whose result is kept, so
text made of kept tokens tokenises exactly as before (every merge on its path is still there), and a word
whose full-vocabulary token was dropped falls back to kept pieces (at worst single bytes). Any text can
still be read and written; it just takes a few more tokens (measured and reported as
``tokens_per_full_token``). The mapping (``new_to_old``) is recorded in ``output_vocab.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ModelError
from ..models.vocab import renumber

FILE = "output_vocab.json"


@dataclass
class OutputVocab:
    new_to_old: list[int]
    """Index: the student's token id; value: the teacher's (full tokenizer's) id."""
    full_size: int
    min_count: int
    max_size: int | None
    counted_tokens: int
    """Training-split tokens the counts came from."""
    full_tokenizer_sha256: str

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def old_to_new(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.new_to_old)}


def count_ids(arrays: Iterable, vocab_size: int) -> np.ndarray:
    """Occurrences of each token id over ``arrays`` (token-id arrays or lists)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for a in arrays:
        a = np.asarray(a, dtype=np.int64).ravel()
        a = a[(a >= 0) & (a < vocab_size)]
        if a.size:
            counts += np.bincount(a, minlength=vocab_size)
    return counts


def _pair(m) -> tuple[str, str]:
    a, b = m if isinstance(m, list) else m.split(" ", 1)
    return a, b


def _merge_parents(model: dict) -> dict[int, list[int]]:
    vocab = model["vocab"]
    parents: dict[int, list[int]] = {}
    for m in model["merges"]:
        a, b = _pair(m)
        child = vocab.get(a + b)
        if child is not None and a in vocab and b in vocab:
            parents.setdefault(child, []).extend((vocab[a], vocab[b]))
    return parents


def choose_kept(tokenizer_json: dict, counts: np.ndarray, min_count: int = 1, max_size: int | None = None) -> list[int]:
    """Added/special tokens, single-character tokens, then the tokens counted ``min_count``+ times, most
    frequent first while fewer than ``max_size`` are kept; closed under BPE merge parents. Sorted ids."""
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        raise ModelError(f"output_vocab = \"trim\" needs a BPE tokenizer (byte-level, as SmolLM, Llama-3 and "
                         f"Qwen use); this one is {model.get('type')!r}: use output_vocab = \"full\"")
    vocab: dict[str, int] = model["vocab"]
    keep = {t["id"] for t in tokenizer_json.get("added_tokens", [])} | {i for t, i in vocab.items() if len(t) == 1}
    parents = _merge_parents(model)
    for i in np.argsort(-counts, kind="stable"):
        if counts[i] < min_count or (max_size is not None and len(keep) >= max_size):
            break
        todo = [int(i)]
        while todo:
            j = todo.pop()
            if j not in keep:
                keep.add(j)
                todo.extend(parents.get(j, ()))
    return sorted(keep)


def trimmed_tokenizer_json(tokenizer_json: dict, new_to_old: list[int]) -> dict:
    """The tokenizer over the kept ids, renumbered, with only the merges that build kept tokens."""
    keep = set(new_to_old)
    vocab = tokenizer_json["model"]["vocab"]
    out = renumber(tokenizer_json, new_to_old).tokenizer_json
    model = out["model"]
    model["merges"] = [m for m in tokenizer_json["model"]["merges"] if vocab.get("".join(_pair(m))) in keep]
    model["ignore_merges"] = False  # a whole-word vocabulary lookup would skip the fallback to pieces
    return out


def trim_causal_lm(model, new_to_old: list[int]):
    """Keep the embedding and output rows of the kept ids (new-id order), in place; special ids follow."""
    import torch

    from ..models.vocab_student import gathered_embedding

    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    new_emb, where = gathered_embedding(emb, new_to_old)
    model.set_input_embeddings(new_emb)
    if head is not None:
        index = torch.tensor(new_to_old, dtype=torch.long)
        new_head = torch.nn.Linear(head.weight.shape[1], len(new_to_old), bias=head.bias is not None)
        new_head.weight = new_emb.weight if tied else torch.nn.Parameter(head.weight.detach()[index].clone())
        if head.bias is not None:
            new_head.bias = torch.nn.Parameter(head.bias.detach()[index].clone())
        model.set_output_embeddings(new_head)
    model.config.vocab_size = len(new_to_old)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(v, int):
                setattr(cfg, key, where.get(v))
            elif isinstance(v, list):
                setattr(cfg, key, [where[x] for x in v if x in where])
    return model


def plan(tokenizer_json: dict, counts: np.ndarray, min_count: int = 1, max_size: int | None = None) -> OutputVocab:
    kept = choose_kept(tokenizer_json, counts, min_count, max_size)
    sha = hashlib.sha256(json.dumps(tokenizer_json, sort_keys=True).encode()).hexdigest()
    return OutputVocab(kept, len(tokenizer_json["model"]["vocab"]), min_count, max_size, int(counts.sum()), sha)


def write(folder: Path, ov: OutputVocab, trimmed_json: dict) -> None:
    """Record ``ov`` and put the trimmed tokenizer in place of the folder's full one (call inside an atomic
    dir, after the model and the full tokenizer were saved there)."""
    folder = Path(folder)
    (folder / FILE).write_text(json.dumps(ov.as_dict()) + "\n")
    (folder / "tokenizer.json").write_text(json.dumps(trimmed_json, ensure_ascii=False), encoding="utf-8")
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if "added_tokens_decoder" in cfg:  # older tokenizer configs key their added tokens by id
        where = ov.old_to_new
        cfg["added_tokens_decoder"] = {str(where[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()
                                       if int(k) in where}
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def read(folder: Path) -> OutputVocab | None:
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return OutputVocab(**{k: d[k] for k in OutputVocab.__dataclass_fields__})
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not an output-vocabulary record ({type(e).__name__}: {e})") from None
