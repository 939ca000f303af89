"""PTQ vs quantization-aware distillation (QAD) of a causal-LM student for the et-8da4w export.

    HF_HUB_OFFLINE=1 python benchmarks/llm_qad.py --recipe examples/llm/recipe.toml --out runs/llm-qad
    HF_HUB_OFFLINE=1 python benchmarks/llm_qad.py --seeds 2 --write-headline   # + seed noise, into llm.json

Distils the recipe's student twice per seed on one prepared context (same teacher, text, chat mix,
steps): ``[distill] qat = "none"`` (quantized after training) and ``"8da4w"`` (trained through
torchao's fake quantization of the export's own configs, :mod:`edgedistill.llm.qat`). Both are then
scored as the et-8da4w export ships them (the export configs' fake quantization, which is the eager
8da4w model; ``tests/unit/test_llm_qat.py`` checks the ``.pte`` against it): held-out prose perplexity
and top-1 agreement with the teacher, and the chat metrics on the recipe's held-out prompts. Float
(unquantized) perplexity is reported beside them: QAD may trade some of it for the 4-bit model.

Noise: a paired bootstrap over test blocks of the QAD - PTQ mean NLL (what the test sample alone
moves), and with ``--seeds 2`` or more the seed-to-seed spread of the PTQ arm's 8da4w perplexity.
Writes OUT/llm_qad.json; ``--write-headline`` adds it as ``headline.qad`` of benchmarks/results/llm.json
and writes benchmarks/results/llm_qad.md (``--attach OUT/llm_qad.json`` does both for a finished run).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARMS = {"ptq": "none", "qad": "8da4w"}
BOOTSTRAP = 2000


def block_nll(model, blocks: np.ndarray) -> np.ndarray:
    """Mean next-token NLL of each block (all blocks have the same length, so their mean is the test NLL)."""
    from edgedistill.llm.evaluate import evaluate_lm

    return np.array([evaluate_lm(model, blocks[i : i + 1], desc=f"block {i + 1}/{len(blocks)}").nll
                     for i in range(len(blocks))])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> dict:
    """ppl(b) - ppl(a) and its 95% interval when the test blocks are resampled (the same draw for both)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n, len(a)))
    diff = np.exp(b[idx].mean(1)) - np.exp(a[idx].mean(1))
    return {"ppl_delta": float(math.exp(b.mean()) - math.exp(a.mean())),
            "ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))], "resamples": n}


def score(student, ctx, chat_set, answer_tokens: int) -> dict:
    """The student as the et-8da4w export quantizes it: prose ppl, agreement, chat metrics."""
    from edgedistill.llm.chat_eval import evaluate_chat
    from edgedistill.llm.evaluate import evaluate_lm
    from edgedistill.llm.qat import prepare_8da4w

    q = prepare_8da4w(copy.deepcopy(student)).eval()
    nll = block_nll(q, ctx.test)
    agree = evaluate_lm(q, ctx.test, teacher_top1=ctx.test_top1, desc="8da4w agreement").agreement
    out = {"ppl_8da4w": float(math.exp(nll.mean())), "agreement_8da4w": agree, "_nll": nll}
    if chat_set is not None and chat_set.held_out:
        chat = evaluate_chat(q, ctx.tok, chat_set.held_out, chat_set.stops, chat_set.pad_id, answer_tokens)
        out.update({f"{k}_8da4w": chat[k] for k in ("chat_nonempty_rate", "chat_agreement", "chat_rougeL_vs_teacher")},
                   chat_examples_8da4w=chat.get("examples", [])[:3])
    return out


def compare(recipe, seeds: int, steps: int | None) -> dict:
    from edgedistill.llm.stage import chat_data, distill_llm, prepare_llm

    ctx = prepare_llm(recipe)
    chat_set = chat_data(ctx, recipe) if recipe.data.wants_chat else None
    runs = []
    for seed in range(seeds):
        for arm, qat in ARMS.items():
            d = replace(recipe.distill, qat=qat, seed=seed, **({"max_steps": steps} if steps else {}))
            variant = replace(recipe, name=f"{recipe.name}-{arm}-s{seed}", distill=d)
            t0 = time.perf_counter()
            student, rep = distill_llm(ctx, variant)
            seconds = time.perf_counter() - t0
            run = {"arm": arm, "qat": qat, "seed": seed, "steps": d.max_steps, "distill_seconds": round(seconds, 1),
                   "ppl_float": rep["student"]["test_after"]["ppl"],
                   "agreement_float": rep["student"]["test_after"]["agreement"],
                   "chat_nonempty_rate_float": (rep.get("chat") or {}).get("chat_nonempty_rate"),
                   **score(student, ctx, chat_set, recipe.data.chat_answer_tokens)}
            print(json.dumps({k: v for k, v in run.items() if not k.startswith(("_", "chat_examples"))}), flush=True)
            runs.append(run)
    return summarise(runs, ctx.teacher_test.ppl)


def summarise(runs: list[dict], teacher_ppl: float) -> dict:
    """The ``qad`` block: per-arm medians over seeds, the paired bootstrap of seed 0, the seed spread."""
    by = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    block = {"export_scheme": "et-8da4w", "teacher_ppl": teacher_ppl, "seeds": len(by["ptq"]),
             "steps": runs[0]["steps"]}
    for arm, rs in by.items():
        block[arm] = {k: float(np.median([r[k] for r in rs])) for k in rs[0]
                      if k.startswith(("ppl_", "agreement_", "chat_", "distill_"))
                      and isinstance(rs[0][k], (int, float))}
    boot = paired_bootstrap(by["ptq"][0]["_nll"], by["qad"][0]["_nll"])
    ptq = [r["ppl_8da4w"] for r in by["ptq"]]
    seed_noise = float(max(ptq) - min(ptq)) if len(ptq) > 1 else None
    delta = block["qad"]["ppl_8da4w"] - block["ptq"]["ppl_8da4w"]
    block.update(ppl_8da4w_delta=delta, test_bootstrap_seed0=boot, seed_noise_ppl_8da4w=seed_noise,
                 # better only if the test sample cannot explain it (interval below 0) and, where several seeds
                 # ran, if it exceeds the PTQ arm's seed-to-seed spread too
                 qad_better_beyond_noise=bool(delta < 0 and boot["ci95"][1] < 0
                                              and (seed_noise is None or -delta > seed_noise)),
                 examples_seed0={arm: by[arm][0].get("chat_examples_8da4w", []) for arm in ARMS},
                 runs=[{k: v for k, v in r.items() if not k.startswith(("_", "chat_examples"))} for r in runs])
    return block


def markdown(block: dict) -> str:
    """llm_qad.md: the two arms side by side, the verdict with its noise, three held-out answers of each."""
    from edgedistill.llm.chat_eval import table_cell as cell
    rows = []
    for arm in ARMS:
        a = block[arm]
        rows.append(f"| {arm.upper()} (qat = {ARMS[arm]!r}) | {a['ppl_8da4w']:.1f} | {a['agreement_8da4w']:.3f} | "
                    f"{a['ppl_float']:.1f} | {a.get('chat_nonempty_rate_8da4w', float('nan')):.0%} | "
                    f"{a.get('chat_agreement_8da4w', float('nan')):.3f} | "
                    f"{a.get('chat_rougeL_vs_teacher_8da4w', float('nan')):.3f} |")
    boot = block["test_bootstrap_seed0"]
    noise = (f"seed spread of the PTQ arm {block['seed_noise_ppl_8da4w']:.1f}" if block["seed_noise_ppl_8da4w"]
             is not None else "one seed per arm: seed noise not measured here")
    lines = [f"# PTQ vs QAD of the LLM student ({block['export_scheme']})", "",
             f"{block['steps']} steps per arm, {block['seeds']} seed(s); teacher held-out ppl "
             f"{block['teacher_ppl']:.1f}; "
             f"both arms scored as the export quantizes them. `{block['command']}` ({block['measured']}).", "",
             "| arm | 8da4w ppl | 8da4w agreement | float ppl | chat non-empty | chat agreement | chat ROUGE-L |",
             "|---|---|---|---|---|---|---|", *rows, "",
             f"QAD - PTQ 8da4w ppl: **{block['ppl_8da4w_delta']:+.1f}** (test-block bootstrap 95% interval "
             f"[{boot['ci95'][0]:+.1f}, {boot['ci95'][1]:+.1f}]; {noise}): QAD better beyond the noise: "
             f"**{'yes' if block['qad_better_beyond_noise'] else 'no'}**.", "",
             "## Held-out chat prompts (8da4w students, greedy)", "",
             "| prompt | teacher | PTQ student | QAD student |", "|---|---|---|---|"]
    ex = block.get("examples_seed0", {})
    for p, q in zip(ex.get("ptq", []), ex.get("qad", []), strict=False):
        lines.append(f"| {cell(p['prompt'])} | {cell(p['teacher'])} | {cell(p['student'])} | {cell(q['student'])} |")
    return "\n".join(lines) + "\n"


def write_headline(block: dict, stored: Path) -> None:
    """``block`` (less its per-run rows and answers) as ``headline.qad`` of the stored llm.json, and its
    markdown as llm_qad.md beside it."""
    from edgedistill.fileutil import write_text_atomic

    doc = json.loads(stored.read_text())
    head = doc["headline"]
    head["qad"] = {k: v for k, v in block.items() if k not in ("runs", "examples_seed0")}
    head["qad"]["source"] = "benchmarks/llm_qad.py (its own run; the other keys are llm.py's)"
    ptq = block.get("ptq", {})
    if "chat_nonempty_rate" not in head and "chat_nonempty_rate_8da4w" in ptq:
        # an llm.py run older than the chat mix has no chat keys: this run's shipped student fills them, said so
        head.update(chat_nonempty_rate=ptq["chat_nonempty_rate_8da4w"],
                    chat_rougeL_vs_teacher=ptq["chat_rougeL_vs_teacher_8da4w"],
                    chat_source="benchmarks/llm_qad.py: the recipe's PTQ student as its et-8da4w export quantizes "
                                "it, on the recipe's held-out chat prompts")
    write_text_atomic(stored, json.dumps(doc, indent=2) + "\n")
    write_text_atomic(stored.with_name("llm_qad.md"), markdown(block))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "llm" / "recipe.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "llm-qad"))
    ap.add_argument("--seeds", type=int, default=1, help="seeds per arm (2+ adds the seed-to-seed noise)")
    ap.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the recipe's)")
    ap.add_argument("--write-headline", action="store_true",
                    help="also store the block as headline.qad of benchmarks/results/llm.json")
    ap.add_argument("--attach", metavar="LLM_QAD_JSON",
                    help="distil nothing: store a finished run's OUT/llm_qad.json as headline.qad of llm.json")
    args = ap.parse_args()
    stored = HERE / "results" / "llm.json"
    if args.attach:
        write_headline(json.loads(Path(args.attach).read_text()), stored)
        return 0
    import torch

    from edgedistill.fileutil import write_text_atomic
    from edgedistill.llm.recipe import load_llm_recipe

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # taskset-pinned runs use only their cores
    t0 = time.perf_counter()
    block = compare(load_llm_recipe(args.recipe), args.seeds, args.steps)
    block["command"] = "python benchmarks/llm_qad.py " + " ".join(sys.argv[1:])
    block["elapsed_s"] = round(time.perf_counter() - t0, 1)
    block["measured"] = time.strftime("%Y-%m-%d")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "llm_qad.json", json.dumps(block, indent=2) + "\n")
    write_text_atomic(out / "llm_qad.md", markdown(block))
    if args.write_headline:
        write_headline(block, stored)
    print(json.dumps({k: v for k, v in block.items() if k not in ("runs", "examples_seed0")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
