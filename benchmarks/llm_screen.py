"""Screen one change to the LLM benchmark's best method (kd_ce) at a short budget: one arm per process.

Each arm is ``benchmarks/llm.py``'s ``kd_ce`` run (the 15-layer cosine-importance student, 1,024 Brown train
blocks, a quarter of each batch chat, 16 validation / 32 test blocks) with ``[distill]`` keys overridden by
``--set KEY=VALUE``; it writes ``OUT/NAME.json`` and re-renders ``OUT.md`` from every arm in ``OUT/``. Run two
arms at once pinned to one core each (their step times then compare; their perplexities compare anyway):

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/llm_screen.py base --steps 100 &
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/llm_screen.py hidden1 --steps 100 \\
        --set hidden_weight=1 &

Short budgets rank changes that pay early; one that pays only late (or only with more text) is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_sets(pairs: list[str]) -> dict:
    """``["hidden_weight=1", "hidden_loss=mse"]`` -> typed [distill] overrides (types from LLMDistillSpec)."""
    from edgedistill.llm.recipe import LLMDistillSpec

    kinds = {f.name: f.type for f in fields(LLMDistillSpec)}
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep or key not in kinds:
            raise SystemExit(f"--set {kv!r}: expected KEY=VALUE with KEY one of LLMDistillSpec's fields")
        kind = str(kinds[key])
        out[key] = (int(value) if kind.startswith("int") else float(value) if kind.startswith("float")
                    else value.lower() == "true" if kind.startswith("bool") else value)
    return out


def depth(row: dict) -> str:
    """The layers column: depth, and where they are not llm.py's, the MLP width (SmolLM2-135M: 1,536), the
    layer importance and the progressive stages healed on the way."""
    width, via, imp = row.get("mlp_width"), row.get("stages"), row.get("importance", "cosine")
    notes = [f"MLP {width}" if width not in (None, 1536) else "", f"{imp} importance" if imp != "cosine" else "",
             "via " + " -> ".join(map(str, via[:-1])) if via else ""]
    notes = [n for n in notes if n]
    return f"{row.get('layers', 15)}" + (f" ({', '.join(notes)})" if notes else "")


def vocab(v: dict | None) -> str:
    return "full" if not v else f"{v['when']}, min {v['min_count']} ({v['kept']:,} kept)"


def markdown(rows: list[dict]) -> str:
    lines = ["# LLM screening arms (kd_ce with one change, short budget)", "",
             "Each row: `benchmarks/llm.py`'s kd_ce run with the listed `[distill]` overrides; one seed (the seed "
             "noise of kd_ce at 200 steps is 1.19 ppl, llm.json `ppl_noise`).", "",
             "Vocabulary: `full`, or trimmed `before` / `after` distillation to the tokens the training split holds "
             "`min` times; the test ppl is per full-vocabulary token of the same held-out text (a trimmed-after row: "
             "untrimmed, then trimmed). Validation ppl of a trimmed-before arm is per kept-vocabulary token.", "",
             "| arm | overrides | layers | vocabulary | train blocks | steps | validation ppl (step: ppl) | test ppl "
             "| s/step | chat non-empty | host |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (-r.get("train_blocks", 1024), r["steps"], r["test_ppl"])):
        curve = ", ".join(f"{s}: {p:g}" for s, p in r["curve"])
        v = r.get("vocab")
        test = f"**{r['test_ppl']:.1f}**"
        if v and v["when"] == "after":
            test += f" -> **{v['test_ppl_trimmed']:.1f}**"
        lines.append(f"| {r['name']} | {json.dumps(r['overrides']) if r['overrides'] else '(none)'} | "
                     f"{depth(r)} | {vocab(v)} | {r.get('train_blocks', 1024)} | {r['steps']} | "
                     f"{curve} | {test} | {r['s_per_step']} | {r['chat_nonempty_rate']} | "
                     f"{r['host']} |")
    lines += ["", "Commands: " + "; ".join(f"`{r['command']}`" for r in rows)]
    lines += [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines) + "\n"


def main() -> int:
    from edgedistill.llm.student import SELECTIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="arm name (OUT/NAME.json)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--train-blocks", type=int, default=1024,
                    help="Brown train blocks (llm.py's 1,024; examples/llm/recipe.toml trains on 256)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--layers", type=int, default=15, help="student depth (llm.py's 15; more decode slower)")
    ap.add_argument("--intermediate-size", type=int, default=None, metavar="N",
                    help="student MLP width (default: the teacher's 1,536; less decodes faster, like fewer layers)")
    ap.add_argument("--importance", default="cosine", choices=SELECTIONS,
                    help="how the student's layers are chosen (llm.py's: cosine)")
    ap.add_argument("--via", type=int, nargs="+", default=None, metavar="LAYERS",
                    help="progressive shrinking: heal these depths first (llm.py's progressive split: half the "
                         "steps on them), with kd_ce's losses throughout")
    ap.add_argument("--stage-teacher", default="previous", choices=("previous", "teacher"),
                    help="with --via: who teaches each stage (teacher: the cached top-k serves them all)")
    ap.add_argument("--vocab-min-count", type=int, default=None, metavar="N",
                    help="trim the output vocabulary to tokens the training split holds N+ times ([student] "
                         "output_vocab = \"trim\"); the test ppl is then per full-vocabulary token of the same text")
    ap.add_argument("--vocab-when", default="before", choices=("before", "after"),
                    help="with --vocab-min-count: trim before distillation (the arm's student trains trimmed) or "
                         "after it (the row also keeps the untrimmed student's ppl)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [distill] override")
    ap.add_argument("--out", default=str(HERE / "results" / "llm_screen"))
    a = ap.parse_args()
    overrides = parse_sets(a.set)
    import torch

    sys.path.insert(0, str(HERE))
    import llm as bench

    from edgedistill.fileutil import write_json_atomic, write_text_atomic
    from edgedistill.llm.stage import TRIMMED_KEY, distill_llm, prepare_llm
    from edgedistill.measure.calibrate import cpu_name

    # llm.py's own defaults, with the 32 test blocks its recorded llm.json run used
    ns = bench.parser().parse_args(["--steps", str(a.steps), "--eval-every", str(a.eval_every), "--train-blocks",
                                    str(a.train_blocks), "--test-blocks", "32", "--precision", a.precision,
                                    "--layers", str(a.layers), "--stages", f"20,{a.layers}"]
                                   + (["--intermediate-size", str(a.intermediate_size)] if a.intermediate_size else []))
    base = bench.base_recipe(ns)
    if a.vocab_min_count:
        trim = {"output_vocab": "trim", "output_vocab_min_count": a.vocab_min_count, "output_vocab_when": a.vocab_when}
        base = replace(base, student=replace(base.student, **trim))
    ctx = prepare_llm(base)
    base = replace(base, student=replace(base.student, importance=a.importance))
    if a.via:  # llm.py's progressive budget split, plus kd_ce's hard labels so only the shrinking differs
        recipe = bench.method_recipe(base, "progressive", 0, [*a.via, a.layers])
        recipe = replace(recipe, student=replace(recipe.student, stage_teacher=a.stage_teacher),
                         distill=replace(recipe.distill, ce_weight=1.0))
    else:
        recipe = bench.method_recipe(base, "kd_ce", 0, [int(x) for x in ns.stages.split(",")])
    recipe = replace(recipe, distill=replace(recipe.distill, **overrides))
    _, rep = distill_llm(ctx, recipe)
    rep.pop(TRIMMED_KEY, None)
    s, d, ov = rep["student"], rep["distill"], rep.get("output_vocab")
    row = {"name": a.name, "overrides": overrides, "train_blocks": a.train_blocks,
           "steps": bench.total_steps(s, d),
           "layers": len(s["layers"]), "mlp_width": s.get("intermediate_size"), "importance": a.importance,
           "stages": recipe.student.stages, "stage_teacher": a.stage_teacher if a.via else None,
           "precision": a.precision,
           # per full-vocabulary token: trimmed first, the student's own tokens are not the teacher's
           "test_ppl": ov["test_ppl_trimmed"] if ov and ov.get("when") == "before" else s["test_after"]["ppl"],
           "vocab": None if ov is None else {k: ov.get(k) for k in ("when", "min_count", "kept", "test_ppl_full",
                                                                   "test_ppl_trimmed", "tokens_per_full_token")},
           "val_ppl": (d.get("best_val") or {}).get("ppl"),
           "best_step": d.get("best_step"),
           "curve": [[e["step"], round(e["ppl"], 2)] for e in d.get("history") or () if "ppl" in e],
           "s_per_step": round(d["train_seconds"] / d["steps"], 2),
           "chat_nonempty_rate": (rep.get("chat") or {}).get("chat_nonempty_rate"),
           "host": f"{cpu_name()}, {torch.get_num_threads()} thread(s)", "measured": time.strftime("%Y-%m-%d"),
           "command": " ".join(["python benchmarks/llm_screen.py", *sys.argv[1:]])}
    out = Path(a.out)
    write_json_atomic(out / f"{a.name}.json", row)
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    write_text_atomic(out.with_suffix(".md"), markdown(rows))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
