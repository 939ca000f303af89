"""The distill stage's ``[student] output_vocab = "trim"`` step: count, trim, and measure what it costs.

Quality is compared on the same held-out text, not the same token ids: each test block is decoded to text
and tokenised by both tokenizers; both students' summed next-token NLL is divided by the *full*
tokenizer's token count, so ``test_ppl_full`` and ``test_ppl_trimmed`` are perplexities per full-vocabulary
token of the same text (a trimmed student that needs more tokens pays for each of them).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import torch

from ..progress import progress, say
from . import output_vocab


def full_tokenizer_json(tok) -> dict:
    return json.loads(tok.backend_tokenizer.to_str())


def small_tokenizer(tok, trimmed_json: dict):
    """An HF fast tokenizer over the trimmed ``tokenizer.json`` with ``tok``'s special-token names."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    names = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
             if getattr(tok, k, None) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(trimmed_json)), **names)


@torch.no_grad()
def text_nll(model, ids_list: list[list[int]]) -> float:
    """Summed next-token NLL over every sequence (one forward each)."""
    from ..distill.device import model_device

    model.eval()
    total, dev = 0.0, model_device(model)
    for ids in progress(ids_list, desc="held-out NLL", unit="text"):
        if len(ids) < 2:
            continue
        x = torch.tensor([ids], dtype=torch.long, device=dev)
        logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
        total += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
    return total


def retokenize(examples, tok, small):
    """Chat examples as the trimmed student sees them: prompt and answer as text, tokenised again."""
    def again(ids: list[int]) -> list[int]:
        return small.encode(tok.decode(ids, skip_special_tokens=False), add_special_tokens=False)

    return [replace(e, prompt=again(e.prompt), answer=again(e.answer)) for e in examples]


def held_out_text(tok, blocks: np.ndarray) -> tuple[list[str], list[list[int]]]:
    """Held-out blocks as text, and that text in the full tokenisation (re-encoded, so both tokenizers
    start from the same string)."""
    texts = [tok.decode(b) for b in blocks]
    return texts, [tok.encode(t, add_special_tokens=False) for t in texts]


def kept_tokenisation(texts: list[str], full_ids: list[list[int]], small, new_to_old) -> dict:
    """The held-out text in a trimmed tokenisation: its ids, the full tokenizer's prediction count
    (``n_full``, the denominator of every per-full-token perplexity), the share of full tokens kept and how
    many more tokens the trimmed tokenizer needs."""
    small_ids = [small.encode(t, add_special_tokens=False) for t in texts]
    kept = set(new_to_old)
    return {"small_ids": small_ids, "n_full": max(sum(len(x) - 1 for x in full_ids), 1),
            "coverage": float(np.mean([i in kept for x in full_ids for i in x])),
            "tokens_per_full_token": sum(map(len, small_ids)) / max(sum(map(len, full_ids)), 1)}


def ppl(nll: float, n: int) -> float:
    return math.exp(min(nll / n, 700.0))


def per_full_token(model, text: dict) -> float:
    """Held-out perplexity of a kept-vocabulary model per full-vocabulary token of the same text
    (``text``: :func:`kept_tokenisation`)."""
    return ppl(text_nll(model, text["small_ids"]), text["n_full"])


SWEEP_MIN_COUNTS = (1, 2, 3, 5, 10)
"""The other ``min_count`` values whose cost the stage also measures, so a recipe can pick its trade-off."""


def _held_out(student, tok, full_json: dict, counts: np.ndarray, min_count: int, max_size: int | None,
              texts: list[str], full_ids: list[list[int]], nll_full: float) -> tuple:
    """(plan, trimmed tokenizer json, HF tokenizer, trimmed model, measures) for one ``min_count``."""
    ov = output_vocab.plan(full_json, counts, min_count, max_size)
    small_json = output_vocab.trimmed_tokenizer_json(full_json, ov.new_to_old)
    small = small_tokenizer(tok, small_json)
    trimmed = output_vocab.trim_causal_lm(copy.deepcopy(student).cpu(), ov.new_to_old)
    text = kept_tokenisation(texts, full_ids, small, ov.new_to_old)
    measures = {
        "kept": len(ov.new_to_old), "min_count": min_count, "max_size": max_size,
        "held_out_coverage": round(text["coverage"], 5),
        "tokens_per_full_token": round(text["tokens_per_full_token"], 5),
        "test_ppl_full": round(ppl(nll_full, text["n_full"]), 3),
        "test_ppl_trimmed": round(per_full_token(trimmed, text), 3),
    }
    return ov, small_json, small, trimmed, measures


def trim_student(student, tok, train_blocks: np.ndarray, test_blocks: np.ndarray, spec, chat_train=(),
                 chat_set=None, chat_answer_tokens: int = 64):
    """(trimmed copy of ``student``, :class:`.output_vocab.OutputVocab`, trimmed tokenizer json, report).

    Counts come from ``train_blocks`` and the chat examples trained on (``chat_train``). ``report["sweep"]``
    has the held-out measures for :data:`SWEEP_MIN_COUNTS` too (same ``max_size``); the held-out chat
    prompts of ``chat_set`` are answered again by the trimmed student."""
    full_json = full_tokenizer_json(tok)
    arrays = [train_blocks, *(e.prompt + e.answer for e in chat_train)]
    counts = output_vocab.count_ids(arrays, len(full_json["model"]["vocab"]))
    texts, full_ids = held_out_text(tok, test_blocks)
    nll_full = text_nll(student.cpu(), full_ids)
    args = (student, tok, full_json, counts)
    ov, small_json, small, trimmed, measures = _held_out(*args, spec.output_vocab_min_count,
                                                         spec.output_vocab_max_size, texts, full_ids, nll_full)
    report = {"when": "after", **measures, "full_size": ov.full_size, "counted_tokens": ov.counted_tokens,
              "ppl_note": "per full-vocabulary token of the same held-out text (see edgedistill/llm/trim_student.py)"}
    report["sweep"] = [dict(measures) if m == ov.min_count else
                       _held_out(*args, m, spec.output_vocab_max_size, texts, full_ids, nll_full)[-1]
                       for m in sorted({*SWEEP_MIN_COUNTS, ov.min_count})]
    if chat_set is not None and chat_set.held_out:
        from .chat_eval import evaluate_chat

        where = ov.old_to_new
        stops = [where[s] for s in chat_set.stops if s in where]
        chat = evaluate_chat(trimmed, small, retokenize(chat_set.held_out, tok, small), stops,
                             where.get(chat_set.pad_id, stops[0]), chat_answer_tokens, n_show=0)
        report["chat"] = {k: chat[k] for k in ("chat_nonempty_rate", "chat_agreement", "chat_rougeL_vs_teacher")}
    cap = "" if ov.max_size is None else f", at most {ov.max_size:,}"
    say(f"output vocabulary: {report['kept']:,} of {ov.full_size:,} tokens kept (min count {ov.min_count}{cap}); "
        f"held-out text {report['held_out_coverage']:.1%} covered, {report['tokens_per_full_token']:.3f} tokens "
        f"per full-vocabulary token; test ppl per full token "
        f"{report['test_ppl_full']:.2f} -> {report['test_ppl_trimmed']:.2f}; other min counts: "
        + ", ".join(f"{r['min_count']}: {r['kept']:,} kept, ppl {r['test_ppl_trimmed']:.2f}"
                    for r in report["sweep"] if r["min_count"] != ov.min_count))
    return trimmed, ov, small_json, report
