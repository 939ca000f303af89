"""Vocabulary trimming for WordPiece students: keep the pieces the training text uses.

Greedy longest-match WordPiece falls back to shorter pieces when a whole word is missing, so the kept set
always includes every single character and ``##``+character seen in the text: any seen word still splits
into kept pieces, and only unseen characters become [UNK] (as with the full vocabulary).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Iterable


@dataclass
class VocabTrim:
    new_to_old: list[int]
    """Index: new id; value: the id in the original vocabulary (dense renumbering, original order kept)."""
    tokenizer_json: dict

    @property
    def old_to_new(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.new_to_old)}

    def mapping_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.new_to_old).encode()).hexdigest()


def count_pieces(tokenizer, texts: Iterable[str]) -> Counter:
    """Count token ids (HF ``tokenizers.Tokenizer``) plus every character piece of the texts' words."""
    counts: Counter = Counter()
    for text in texts:
        enc = tokenizer.encode(text, add_special_tokens=False)
        counts.update(enc.ids)
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)
                                                              if tokenizer.normalizer else text):
            for i, ch in enumerate(word):
                pid = tokenizer.token_to_id(ch if i == 0 else "##" + ch)
                if pid is not None:
                    counts[pid] += 0  # present with count 0: kept regardless of min_count
    return counts


def trim(tokenizer_json: dict, counts: Counter, min_count: int = 1, max_size: int | None = None) -> VocabTrim:
    vocab: dict[str, int] = tokenizer_json["model"]["vocab"]
    special = {t["id"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")}
    id_to_tok = {i: t for t, i in vocab.items()}
    chars = {i for i, c in counts.items() if c == 0 or len(id_to_tok[i].removeprefix("##")) == 1}
    frequent = sorted((i for i, c in counts.items() if c >= min_count and i not in chars and i not in special),
                      key=lambda i: (-counts[i], i))
    if max_size is not None:
        frequent = frequent[:max(0, max_size - len(special) - len(chars))]
    return renumber(tokenizer_json, sorted(special | chars | set(frequent)))


def renumber(tokenizer_json: dict, keep: list[int]) -> VocabTrim:
    """The tokenizer with only the ``keep`` ids (sorted), renumbered densely in their old order; special-token
    ids in ``added_tokens`` and the post-processor follow. A BPE model's merges are the caller's to filter."""
    id_to_tok = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    old_to_new = {old: new for new, old in enumerate(keep)}
    out = copy.deepcopy(tokenizer_json)
    out["model"]["vocab"] = {id_to_tok[old]: new for new, old in enumerate(keep) if old in id_to_tok}
    for t in out.get("added_tokens", []):
        t["id"] = old_to_new[t["id"]]
    post = out.get("post_processor") or {}
    for spec in (post.get("special_tokens") or {}).values():
        spec["ids"] = [old_to_new[i] for i in spec["ids"]]
    for key in ("sep", "cls"):  # BertProcessing form: [token, id]
        if key in post:
            post[key] = [post[key][0], old_to_new[post[key][1]]]
    return VocabTrim(new_to_old=keep, tokenizer_json=out)


def vocab_txt(trimmed: VocabTrim) -> str:
    vocab = trimmed.tokenizer_json["model"]["vocab"]
    return "".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]))


def trim_embedding(weight, new_to_old: list[int]):
    """Rows of the word-embedding matrix for the kept ids, in new-id order (torch tensor or numpy array)."""
    return weight[list(new_to_old)]
