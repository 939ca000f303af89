"""Does the student still chat? Measured on held-out prompts against the teacher's cached greedy answers.

- ``chat_nonempty_rate``: share of the student's greedy answers with some non-whitespace text before the
  stop token (a prose-only student stops at once);
- ``chat_agreement``: under teacher forcing on the teacher's answer, the share of answer positions
  (its stop token included) where the student's argmax is the teacher's token;
- ``chat_rougeL_vs_teacher``: mean ROUGE-L F1 (longest common subsequence of lower-cased words) of the
  student's greedy answer against the teacher's.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..distill.device import model_device
from ..progress import progress

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """ROUGE's tokenisation: lower-case, alphanumeric runs only."""
    return _WORD.findall(text.lower())


def lcs_length(a: list, b: list) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f(reference: str, candidate: str) -> float:
    """ROUGE-L F1 = 2PR / (P + R) with P = LCS / len(candidate), R = LCS / len(reference) in words; two
    empty texts score 1, one empty text 0."""
    ref, cand = words(reference), words(candidate)
    if not ref or not cand:
        return float(not ref and not cand)
    lcs = lcs_length(ref, cand)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(cand), lcs / len(ref)
    return 2 * p * r / (p + r)


def cut_at_stop(tokens: list[int], stops: list[int]) -> list[int]:
    """The tokens up to and including the first stop token."""
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[: i + 1]
    return tokens


@torch.no_grad()
def greedy_answers(model, prompts: list[list[int]], max_new_tokens: int, stops: list[int],
                   pad_id: int) -> list[list[int]]:
    """Greedy answers of ``model`` to a batch of prompts (left-padded, KV-cached), each cut after its first
    stop token."""
    from transformers import GenerationConfig

    was_training = model.training
    model.eval()
    dev = model_device(model)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):] = torch.tensor(p)
        mask[b, width - len(p):] = 1
    cfg = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=list(stops),
                           pad_token_id=pad_id)
    try:
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=cfg)
    finally:
        model.train(was_training)
    return [cut_at_stop(row[width:].tolist(), stops) for row in out.cpu()]


@torch.no_grad()
def forced_agreement(model, prompt: list[int], answer: list[int]) -> tuple[int, int]:
    """(positions where the argmax of ``model`` is the answer's token, answer length) under teacher forcing."""
    if not answer:
        return 0, 0
    dev = model_device(model)
    ids = torch.tensor([prompt + answer], dtype=torch.long, device=dev)
    logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 : -1]
    return int((logits.argmax(-1).cpu() == torch.tensor(answer)).sum()), len(answer)


def evaluate_chat(model, tokenizer, examples, stops: list[int], pad_id: int, max_new_tokens: int,
                  batch_size: int = 8, n_show: int = 5) -> dict:
    """Chat metrics of ``model`` on held-out ``examples`` (:class:`.chat_data.ChatExample` with the
    teacher's answers), plus the first ``n_show`` teacher / student answers side by side."""
    if not examples:
        return {}
    was_training = model.training
    model.eval()
    got: list[list[int]] = []
    for s in progress(range(0, len(examples), batch_size), desc="chat answers (held-out)", unit="batch"):
        got += greedy_answers(model, [e.prompt for e in examples[s : s + batch_size]], max_new_tokens, stops, pad_id)
    agree = total = 0
    for e in examples:
        a, n = forced_agreement(model, e.prompt, e.answer)
        agree, total = agree + a, total + n
    model.train(was_training)
    decode = lambda t: tokenizer.decode([x for x in t if x not in stops], skip_special_tokens=True)  # noqa: E731
    student, teacher = [decode(a) for a in got], [decode(e.answer) for e in examples]
    nonempty = [bool(s.strip()) for s in student]
    rouge = [rouge_l_f(t, s) for t, s in zip(teacher, student, strict=True)]
    by_source: dict[str, list[bool]] = {}
    for e, ok in zip(examples, nonempty, strict=True):
        by_source.setdefault(e.source.split(":")[0], []).append(ok)
    return {
        "prompts": len(examples),
        "chat_nonempty_rate": round(float(np.mean(nonempty)), 4),
        "teacher_nonempty_rate": round(float(np.mean([bool(t.strip()) for t in teacher])), 4),
        "chat_agreement": round(agree / max(total, 1), 4),
        "chat_rougeL_vs_teacher": round(float(np.mean(rouge)), 4),
        "nonempty_by_source": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_source.items())},
        "max_new_tokens": max_new_tokens,
        "examples": [{"source": e.source, "prompt": e.text, "teacher": t, "student": s}
                     for e, t, s in list(zip(examples, teacher, student, strict=True))[:n_show]],
    }


def table_cell(text) -> str:
    """One answer as a markdown table cell: whitespace folded, pipes escaped, an empty answer said so."""
    return " ".join(str(text).split()).replace("|", "/") or "*(empty)*"


def chat_markdown(chat: dict) -> list[str]:
    """Report lines: the metrics, then teacher and student answers side by side."""
    if not chat:
        return []
    lines = ["## Chat (held-out prompts, never trained on)", "",
             f"{chat['prompts']} prompts, greedy, up to {chat['max_new_tokens']} new tokens: non-empty answers "
             f"{chat['chat_nonempty_rate']:.1%} (teacher {chat['teacher_nonempty_rate']:.1%}; by source "
             + ", ".join(f"{k} {v:.1%}" for k, v in chat["nonempty_by_source"].items())
             + f"), agreement with the teacher's answer under teacher forcing {chat['chat_agreement']:.3f}, "
             f"ROUGE-L F1 vs the teacher's answer {chat['chat_rougeL_vs_teacher']:.3f}.", "",
             "| prompt | teacher | student |", "|---|---|---|"]
    lines += [f"| {table_cell(x['prompt'])} | {table_cell(x['teacher'])} | {table_cell(x['student'])} |"
              for x in chat["examples"]]
    return lines + [""]
