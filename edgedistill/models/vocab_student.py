"""``[student] vocab = "trim"``: give a freshly cut student its own, smaller vocabulary.

The pure trimming lives in :mod:`edgedistill.models.vocab`; this module applies it to a Hugging Face student
(embedding rows, ``config.vocab_size``, a reloaded tokenizer), writes ``tokenizer.json`` and ``vocab.txt`` into
the student folder, and measures what the cut costs on held-out text. The teacher keeps its own tokenizer for
its cached targets, so everything that feeds the student tokenizes with the tokenizer returned here.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecipeError
from .vocab import VocabTrim, count_pieces, trim, trim_embedding, vocab_txt


@dataclass
class StudentVocab:
    trimmed: VocabTrim
    tokenizer: object
    """The student's Hugging Face tokenizer over the kept pieces."""
    full_rows: int
    counted_sentences: int
    misaligned: int
    """Training sentences whose pieces differ from the full vocabulary's (0: token positions line up)."""
    record: dict = field(default_factory=dict)


def backend_of(tokenizer):
    """A fresh ``tokenizers.Tokenizer`` copy of a Hugging Face tokenizer (or of a ``tokenizers`` one), without
    padding or truncation: transformers leaves the last call's settings on its backend, and a padded batch would
    count [PAD] as pieces."""
    from tokenizers import Tokenizer

    inner = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None) or tokenizer
    data = json.loads(inner.to_str())
    data["padding"] = data["truncation"] = None
    return Tokenizer.from_str(json.dumps(data))


def read_extra_texts(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"[student] key 'vocab_extra_texts': cannot read {str(path)!r} "
                          f"({type(e).__name__}: {e})") from None
    return [line for line in lines if line.strip()]


def plan_vocab(tokenizer, texts: list[str], spec, recipe) -> StudentVocab:
    """Count the pieces of ``texts`` (+ the spec's extra texts) with ``tokenizer`` (the full one) and trim."""
    from .loading import load_tokenizer

    extra = read_extra_texts(recipe.resolve(spec.vocab_extra_texts)) if spec.vocab_extra_texts else []
    full = backend_of(tokenizer)
    full_json = json.loads(full.to_str())  # no padding / truncation: the student's tokenizer.json starts clean
    if full_json.get("model", {}).get("type") != "WordPiece":
        raise RecipeError(f"[student] key 'vocab': \"trim\" rewrites WordPiece vocabularies; this tokenizer's model "
                          f"is {full_json.get('model', {}).get('type')!r}: use vocab = \"full\"")
    counts = count_pieces(full, list(texts) + extra)
    trimmed = trim(full_json, counts, spec.vocab_min_count, spec.vocab_max_size)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        write_vocab_files(Path(tmp), trimmed)
        small = load_tokenizer(Path(tmp), padding_side=tokenizer.padding_side)
    misaligned = count_misaligned(full, backend_of(small), trimmed, texts)
    sv = StudentVocab(trimmed, small, len(full_json["model"]["vocab"]), len(texts) + len(extra), misaligned)
    sv.record = {
        "mode": "trim", "min_count": spec.vocab_min_count, "max_size": spec.vocab_max_size,
        "extra_texts": spec.vocab_extra_texts, "counted_sentences": sv.counted_sentences,
        "full_rows": sv.full_rows, "kept_rows": len(trimmed.new_to_old),
        "mapping_sha256": trimmed.mapping_sha256(), "misaligned_train_sentences": misaligned,
        "full_tokenizer_sha256": hashlib.sha256(full.to_str().encode()).hexdigest(),
        "kept_old_ids": trimmed.new_to_old,
    }
    return sv


def count_misaligned(full, small, trimmed: VocabTrim, texts: list[str]) -> int:
    """Sentences whose trimmed tokenization is not the full one renumbered. Greedy longest-match keeps a word's
    pieces whenever all of them are kept, so this is 0 with ``vocab_min_count = 1`` and no ``vocab_max_size``."""
    old_of = trimmed.new_to_old
    bad = 0
    for a, b in zip(full.encode_batch(texts), small.encode_batch(texts), strict=True):
        if len(a.ids) != len(b.ids) or any(old_of[j] != i for i, j in zip(a.ids, b.ids, strict=True)):
            bad += 1
    return bad


def refuse_token_losses(sv: StudentVocab | None, token_losses: list[str]) -> None:
    """Token-level losses compare student and teacher position by position; a trim that re-splits training text
    would shift positions."""
    if sv is None or not token_losses or sv.misaligned == 0:
        return
    cap = "" if sv.record["max_size"] is None else f", vocab_max_size = {sv.record['max_size']}"
    raise RecipeError(f"[student] vocab = \"trim\" with vocab_min_count = {sv.record['min_count']}{cap} "
                      f"drops pieces of {sv.misaligned} training sentences, which then tokenize differently from the "
                      f"teacher, so the token-level losses {token_losses} cannot line up; use vocab_min_count = 1 "
                      "without vocab_max_size, or sentence-level losses only")


def gathered_embedding(old, new_to_old: list[int]):
    """A new ``nn.Embedding`` holding ``old``'s rows of the kept ids (new-id order), its padding row remapped;
    returns it with the old -> new id map. Shared by the encoder and the causal-LM trims."""
    import torch

    where = {o: n for n, o in enumerate(new_to_old)}
    weight = trim_embedding(old.weight.detach(), new_to_old).clone()
    new = torch.nn.Embedding(weight.shape[0], weight.shape[1],
                             padding_idx=where.get(old.padding_idx) if old.padding_idx is not None else None)
    new.weight = torch.nn.Parameter(weight, requires_grad=old.weight.requires_grad)
    return new, where


def trim_model(model, new_to_old: list[int]) -> None:
    """Keep the word-embedding rows of the kept ids (new-id order) and shrink ``config.vocab_size``."""
    new, where = gathered_embedding(model.get_input_embeddings(), new_to_old)
    model.set_input_embeddings(new)
    model.config.vocab_size = new.weight.shape[0]
    if getattr(model.config, "pad_token_id", None) is not None:
        model.config.pad_token_id = where.get(model.config.pad_token_id, 0)


def write_vocab_files(folder: Path, trimmed: VocabTrim) -> None:
    """The trimmed ``tokenizer.json`` (what Python, the runtime and the apps load) and ``vocab.txt`` (one piece
    per line in id order, for WordPiece readers that take a plain list)."""
    (folder / "tokenizer.json").write_text(json.dumps(trimmed.tokenizer_json, ensure_ascii=False), encoding="utf-8")
    (folder / "vocab.txt").write_text(vocab_txt(trimmed), encoding="utf-8")


def oov_stats(full, small, texts: list[str]) -> dict:
    """What the trimmed vocabulary loses on ``texts`` (``tokenizers.Tokenizer`` objects, no special tokens).

    ``oov_rate``: share of the full vocabulary's pieces that the trimmed one lacks (their word is re-split into
    shorter kept pieces, or becomes [UNK]); ``unk_rate``: share of those pieces whose word became [UNK] only
    with the trimmed vocabulary; ``length_ratio``: trimmed pieces per full piece."""
    kept = set(small.get_vocab())
    unk = small.model.unk_token if hasattr(small.model, "unk_token") else "[UNK]"
    n_full = n_small = missing = became_unk = 0
    for a, b in zip(full.encode_batch(texts, add_special_tokens=False),
                    small.encode_batch(texts, add_special_tokens=False), strict=True):
        n_full += len(a.tokens)
        n_small += len(b.tokens)
        missing += sum(t not in kept for t in a.tokens)
        unk_words = {w for w, t in zip(b.word_ids, b.tokens, strict=True) if t == unk}
        became_unk += sum(1 for w, t in zip(a.word_ids, a.tokens, strict=True) if w in unk_words and t != unk)
    return {"texts": len(texts), "full_pieces": n_full,
            "oov_rate": missing / n_full if n_full else 0.0,
            "unk_rate": became_unk / n_full if n_full else 0.0,
            "length_ratio": n_small / n_full if n_full else 1.0}


def student_vocab_record(student_dir: Path) -> dict | None:
    """The ``vocab`` block of a trimmed student's distill.json; None for a full-vocabulary student."""
    path = Path(student_dir) / "distill.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text()).get("vocab")
    return rec if rec and rec.get("mode") == "trim" else None


def held_out_report(ws, student_dir: Path, texts: list[str]) -> dict | None:
    """The trimmed student's vocabulary summary with :func:`oov_stats` on ``texts`` (held-out sentences), for the
    export manifest and the bench report; ``{"mode": "full"}`` for a full-vocabulary student."""
    from tokenizers import Tokenizer

    from .loading import load_tokenizer
    from .teacher import resolve_model

    rec = student_vocab_record(student_dir)
    if rec is None:
        return {"mode": "full"}
    r = ws.recipe
    folder = resolve_model(r.student.base, r, "[student] base").folder if r.student.base else ws.teacher_ref.folder
    full = backend_of(load_tokenizer(Path(folder)))
    small = backend_of(Tokenizer.from_file(str(Path(student_dir) / "tokenizer.json")))
    same = hashlib.sha256(full.to_str().encode()).hexdigest() == rec["full_tokenizer_sha256"]
    return {"mode": "trim", "kept_rows": rec["kept_rows"], "full_rows": rec["full_rows"],
            "mapping_sha256": rec["mapping_sha256"], "full_tokenizer_matches": same,
            **oov_stats(full, small, list(texts))}
