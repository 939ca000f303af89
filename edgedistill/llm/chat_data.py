"""Chat-preserving distillation data: prompts, a held-out split, and the teacher's cached answers.

A student trained on prose alone answers every chat-template prompt with an
immediate stop token. The cure is chat in the training mix: user turns from
``chatterbot-corpus`` plus instruction prompts (summarise, continue, rewrite,
answer ...) written over passages of the *train* split's text, each wrapped in
the tokenizer's chat template exactly as :func:`edgedistill.llm.generate.generate_text`
wraps it at inference. Prompts go to train or held-out by a stable hash of
their text, so a held-out prompt is never trained on whatever else changes.

The teacher answers every prompt once, greedily, until a stop token (the
bundle's stop ids). Each answer is one small JSON file named by the hash of
its prompt ids, in a folder keyed by teacher sha, tokenizer and generation
settings, written atomically: a killed run keeps every finished answer and
the next run generates only the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..data.base import _bucket
from ..errors import DataError
from ..fileutil import sha256_json, write_json_atomic
from ..progress import progress

ANSWERS_VERSION = 1
HELD_OUT_PERCENT = 10
"""Share of prompts (by hash of the text) kept out of training for the chat metrics."""

TEMPLATES = (
    "Summarise this in one sentence:\n\n{p}",
    "Continue this text:\n\n{p}",
    "Rewrite this in simpler words:\n\n{p}",
    "What is this passage about?\n\n{p}",
    "Give this text a short title.\n\n{p}",
    "Translate this into plain modern English:\n\n{p}",
    "Write one question that this text answers.\n\n{p}",
    "List three key words from this text.\n\n{p}",
    "What does the word \"{w}\" mean in this sentence?\n\n{s}",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass(frozen=True)
class ChatPromptText:
    source: str
    """``chatterbot:<topic>`` or ``instruction:<template number>``."""
    text: str


def chat_ids(tokenizer, text: str) -> list[int]:
    """One user turn as the model sees it at inference: the chat template with the generation prompt
    (plain text, no special tokens, for a tokenizer without a template)."""
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=False))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def is_held_out(text: str) -> bool:
    return _bucket("chat:" + text, 100) < HELD_OUT_PERCENT


def instruction_prompts(tokenizer, blocks: np.ndarray, n: int, seed: int = 0,
                        max_words: int = 60) -> list[ChatPromptText]:
    """``n`` instruction prompts over passages of 1-3 sentences cut from (decoded) ``blocks``."""
    rng = np.random.default_rng(seed)
    out: list[ChatPromptText] = []
    tries = 0
    while len(out) < n and tries < 20 * n and len(blocks):
        tries += 1
        text = tokenizer.decode(blocks[int(rng.integers(len(blocks)))].tolist(), skip_special_tokens=True)
        sents = [s.strip() for s in _SENTENCE.split(text)][1:-1]  # the first and last are cut mid-sentence
        if not sents:
            continue
        i = int(rng.integers(len(sents)))
        passage = " ".join(sents[i : i + int(rng.integers(1, 4))])
        words = passage.split()
        if not 5 <= len(words) <= max_words:
            continue
        t = int(rng.integers(len(TEMPLATES)))
        long_words = [w.strip(".,;:!?\"'()") for w in words if len(w.strip(".,;:!?\"'()")) >= 6]
        if "{w}" in TEMPLATES[t] and not long_words:
            continue
        w = long_words[int(rng.integers(len(long_words)))] if long_words else ""
        out.append(ChatPromptText(f"instruction:{t}", TEMPLATES[t].format(p=passage, w=w, s=passage)))
    return out


def chat_prompt_pool(tokenizer, train_blocks: np.ndarray, n_instructions: int, seed: int = 0,
                     chatterbot: list | None = None) -> tuple[list[ChatPromptText], list[ChatPromptText]]:
    """(train, held-out) prompts: chatterbot user turns plus instruction prompts, split by text hash."""
    if chatterbot is None:
        from .chatterbot import load_prompts

        chatterbot = load_prompts()
    pool = [ChatPromptText(f"chatterbot:{p.topic}", p.text) for p in chatterbot]
    pool += instruction_prompts(tokenizer, train_blocks, n_instructions, seed)
    seen, train, held = set(), [], []
    for p in pool:
        if p.text not in seen:
            seen.add(p.text)
            (held if is_held_out(p.text) else train).append(p)
    return train, held


def pick(prompts: list[ChatPromptText], n: int | None) -> list[ChatPromptText]:
    """Up to ``n`` prompts in a fixed order that mixes the sources (by hash, independent of the others)."""
    ordered = sorted(prompts, key=lambda p: _bucket("pick:" + p.text, 1 << 62))
    return ordered if n is None else ordered[:n]


@dataclass
class ChatExample:
    prompt: list[int]
    answer: list[int]
    """The teacher's greedy answer, ending with its stop token when it stopped within the limit."""
    source: str = ""
    text: str = ""


def answers_folder(teacher_sha: str, tokenizer_sha: str, max_new_tokens: int, stops: list[int],
                   root: Path | None = None) -> Path:
    key = sha256_json({"v": ANSWERS_VERSION, "teacher": teacher_sha, "tokenizer": tokenizer_sha,
                       "max_new_tokens": max_new_tokens, "stops": sorted(stops), "decoding": "greedy"})
    return (root or cache_dir("llm-chat-answers")) / key[:24]


def _answer_file(folder: Path, prompt: list[int]) -> Path:
    return folder / f"{sha256_json(prompt)[:32]}.json"


def _read_answer(path: Path, prompt: list[int]) -> list[int] | None:
    try:
        d = json.loads(path.read_text())
        return d["answer"] if d.get("prompt") == prompt and isinstance(d.get("answer"), list) else None
    except (OSError, json.JSONDecodeError, KeyError):
        return None


def teacher_answers(teacher, prompts: list[list[int]], *, teacher_sha: str, tokenizer_sha: str, stops: list[int],
                    pad_id: int, max_new_tokens: int = 64, batch_size: int = 8,
                    root: Path | None = None) -> tuple[list[list[int]], int]:
    """(the teacher's greedy answer to every prompt, how many were generated now); cached per prompt."""
    from .chat_eval import greedy_answers

    if not prompts:
        raise DataError("chat distillation needs at least one prompt")
    folder = answers_folder(teacher_sha, tokenizer_sha, max_new_tokens, stops, root)
    folder.mkdir(parents=True, exist_ok=True)
    answers = [_read_answer(_answer_file(folder, p), p) for p in prompts]
    todo = [i for i, a in enumerate(answers) if a is None]
    todo.sort(key=lambda i: len(prompts[i]))  # similar lengths per batch: less padding
    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    for batch in progress(batches, desc=f"teacher chat answers ({len(todo)} of {len(prompts)} to write)",
                          unit="batch"):
        got = greedy_answers(teacher, [prompts[i] for i in batch], max_new_tokens, stops, pad_id)
        for i, a in zip(batch, got, strict=True):
            write_json_atomic(_answer_file(folder, prompts[i]), {"prompt": prompts[i], "answer": a})
            answers[i] = a
    return answers, len(todo)


@dataclass
class ChatSet:
    """What a chat-mixed run trains on and is measured on."""
    train: list[ChatExample]
    held_out: list[ChatExample]
    stops: list[int]
    pad_id: int
    generated: int = 0
    folder: Path | None = None
    closed: int = 0
    """Train answers the length cap cut off that were closed at their last sentence end (see close_at_sentence)."""


def build_chat_set(tutor, train_blocks: np.ndarray, *, n_train: int, n_held_out: int, n_instructions: int,
                   max_new_tokens: int, max_prompt_tokens: int, seed: int = 0, chatterbot: list | None = None,
                   root: Path | None = None) -> ChatSet:
    """Prompts -> template ids -> the teacher's cached answers, for ``n_train`` train and ``n_held_out``
    held-out prompts (prompts whose template ids exceed ``max_prompt_tokens`` are skipped, never cut)."""
    from .bundle import generation_config

    tok = tutor.tokenizer
    train_p, held_p = chat_prompt_pool(tok, train_blocks, n_instructions, seed, chatterbot)
    stops = generation_config(tutor.model, tok, 0)["eos_token_ids"]
    if not stops:
        raise DataError("the teacher has no EOS / stop token: a chat answer could never end")
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]

    def encode(ps, n):
        out = []
        if n == 0:
            return out
        for p in pick(ps, None):
            ids = chat_ids(tok, p.text)
            if 0 < len(ids) <= max_prompt_tokens:
                out.append((p, ids))
            if len(out) == n:
                break
        return out

    train_e, held_e = encode(train_p, n_train), encode(held_p, n_held_out)
    both = train_e + held_e
    if not both:
        raise DataError(f"no chat prompt fits in {max_prompt_tokens} tokens")
    answers, generated = teacher_answers(
        tutor.model, [ids for _, ids in both], teacher_sha=tutor.sha, tokenizer_sha=tutor.tokenizer_sha,
        stops=stops, pad_id=pad, max_new_tokens=max_new_tokens, root=root)
    ex = [ChatExample(ids, a, p.source, p.text) for (p, ids), a in zip(both, answers, strict=True)]
    train, held_out = ex[: len(train_e)], ex[len(train_e):]
    # Held-out answers stay as the teacher wrote them: they are the reference the student is scored against.
    closed = 0
    for e in train:
        e.answer, was_closed = close_at_sentence(e.answer, stops, tok, max_new_tokens)
        closed += was_closed
    return ChatSet(train, held_out, stops, pad, generated,
                   answers_folder(tutor.sha, tutor.tokenizer_sha, max_new_tokens, stops, root), closed)


SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s*$")
MIN_CLOSED_ANSWER = 8
"""Tokens an answer keeps at least when it is cut back to a sentence end (shorter: left open)."""


def close_at_sentence(answer: list[int], stops: list[int], tokenizer, max_new_tokens: int) -> tuple[list[int], bool]:
    """An answer the length cap cut off (no stop token) ends at its last complete sentence, then the stop.

    Measured on SmolLM2-135M-Instruct: all 40 greedy answers decoded at 48 tokens ran to the cap, so a
    student trained on them never sees an answer end and rambles until its own cap. Cutting back to the
    last sentence end teaches it where answers stop; an answer with no sentence end past
    :data:`MIN_CLOSED_ANSWER` tokens is kept as it is (open). Returns (answer, whether it was closed).
    """
    if not answer or len(answer) < max_new_tokens or any(t in stops for t in answer):
        return answer, False
    for end in range(len(answer), MIN_CLOSED_ANSWER - 1, -1):
        if SENTENCE_END.search(tokenizer.decode(answer[end - 1:end])):
            return answer[:end] + [stops[0]], True
    return answer, False


@dataclass
class ChatMix:
    """What :func:`edgedistill.llm.train.train_causal` mixes into each batch."""
    examples: list[ChatExample]
    ratio: float
    """Share of each batch's rows that are chat examples (at least one row when > 0)."""
    pad_id: int
    max_len: int = 512
    """Prompt + answer tokens kept per example (the rest is cut, and so never trained on)."""


def answer_batch(examples: list[ChatExample], pad_id: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, labels)`` ``[B, T]`` int64 for sequence-level KD on the teacher's answers: prompt + answer,
    right-padded; ``labels[b, t]`` is the next token where it is an answer token, else -100, so the loss
    sees only the answer (the prompt, the padding and anything past ``max_len`` are masked)."""
    seqs = [(e.prompt + e.answer)[:max_len] for e in examples]
    t = max(len(s) for s in seqs)
    ids = np.full((len(seqs), t), pad_id, dtype=np.int64)
    labels = np.full((len(seqs), t), -100, dtype=np.int64)
    for b, (e, s) in enumerate(zip(examples, seqs, strict=True)):
        ids[b, : len(s)] = s
        start = len(e.prompt)  # position start - 1 predicts the first answer token
        if start < len(s):
            labels[b, start - 1 : len(s) - 1] = s[start:]
    return ids, labels
