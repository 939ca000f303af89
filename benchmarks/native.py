"""Native runtime vs Python runtime: tokenizer exactness on real text, outputs, memory and latency.

    python benchmarks/native.py --bundle runs/quickstart/bundles/phone-et-int8 --llm-bundle runs/llm/bundles/et-8da4w
Writes benchmarks/results/native.{json,md}. Each runtime runs in its own fresh process (peak RSS = the whole
process). ``--llm-bundle`` (a causal-LM .pte bundle) compares greedy generation token for token on real prompts
(Brown corpus sentences); without it ``llm_greedy_equal`` is null.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PY_RUN = r"""
import json, sys, time
from edgedistill.runtime import Bundle
path, threads, texts = sys.argv[1], int(sys.argv[2]), json.loads(sys.stdin.read())
t0 = time.perf_counter(); b = Bundle.open(path, threads=threads); load = time.perf_counter() - t0
times, out = [], []
for t in texts:
    s = time.perf_counter(); r = b.predict([t])[0]; times.append((time.perf_counter() - s) * 1000)
    out.append(list(r["scores"].values()) if "scores" in r else r["embedding"])
hwm = [float(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")][0]
print(json.dumps({"load_ms": load * 1000, "times_ms": times, "out": out, "peak_rss_mb": hwm / 1024}))
"""


PY_LLM = r"""
import json, sys, time
from edgedistill.runtime import CausalLM, Sampling
path, prompts, steps, threads = sys.argv[1], json.loads(sys.stdin.read()), int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter(); lm = CausalLM.open(path, threads=threads); load = time.perf_counter() - t0
out = []
for p in prompts:
    ids = lm.encode(p)
    gen = list(lm.stream_ids(ids, Sampling(max_new_tokens=steps)))
    out.append({"prompt_ids": ids, "ids": gen, "decode_tokens_per_s": lm.stats["decode_tokens_per_s"],
                "total_ms": lm.stats["total_s"] * 1000})
hwm = [float(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")][0]
print(json.dumps({"load_ms": load * 1000, "out": out, "peak_rss_mb": hwm / 1024}))
"""


def threads_of(bundle: Path) -> int:
    """The Python runtime's default (the bundle target's thread count, capped at the cores); both runtimes
    get it, so their timings compare."""
    from edgedistill.runtime.bundle import bundle_threads

    return bundle_threads(json.loads((bundle / "manifest.json").read_text()), None)


def llm_compare(binary: Path, bundle: Path, prompts: list[str], steps: int) -> dict:
    """Greedy ids, Python CausalLM vs edgedistill-native generate, on the same prompts (text, so the BPE prompt
    encoding is compared too). Python: one process for all prompts; native: one fresh process per prompt."""
    threads = threads_of(bundle)
    py = subprocess.run([sys.executable, "-c", PY_LLM, str(bundle), str(steps), str(threads)],
                        input=json.dumps(prompts), capture_output=True, text=True, check=True)
    want = json.loads(py.stdout.strip().splitlines()[-1])
    got, stats = [], []
    for p in prompts:
        proc = subprocess.run([str(binary), "generate", str(bundle), "--max-new-tokens", str(steps), "--timing",
                               "--threads", str(threads), p],
                              capture_output=True, text=True, check=True)
        got.append(json.loads(proc.stdout))
        stats.append(json.loads(proc.stderr.strip().splitlines()[-1]))
    pairs = list(zip(want["out"], got, strict=True))
    return {"llm_greedy_equal": all(w["ids"] == g["ids"] and w["prompt_ids"] == g["prompt_ids"] for w, g in pairs),
            "llm_prompt_ids_equal": all(w["prompt_ids"] == g["prompt_ids"] for w, g in pairs),
            "llm_prompts": len(prompts), "llm_steps": steps, "llm_threads": threads,
            "llm_tokens_compared": sum(len(w["ids"]) for w, _ in pairs),
            "llm_native_peak_rss_mb": round(max(s["peak_rss_mb"] for s in stats), 1),
            "llm_python_peak_rss_mb": round(want["peak_rss_mb"], 1),
            "llm_native_generate_ms": round(p50([s["times_ms"][0] for s in stats]), 1),
            "llm_python_generate_ms": round(p50([w["total_ms"] for w in want["out"]]), 1),
            "llm_native_load_ms": round(p50([s["load_ms"] for s in stats]), 1),
            "llm_python_load_ms": round(want["load_ms"], 1)}


def sentences(limit_brown: int) -> list[str]:
    from edgedistill.data.vader import load_vader
    from edgedistill.llm.brown import load_brown

    vader = [e.text for e in load_vader(None, None)]
    brown = [s.strip() for d in load_brown() for s in re.split(r"(?<=[.!?])\s+", d.text) if s.strip()]
    return vader + brown[:limit_brown]


def exact_rate(binary: Path, tokenizer_json: Path, texts: list[str], special: bool, max_length: int) -> float:
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(tokenizer_json))
    tk.no_padding()
    tk.enable_truncation(max_length) if max_length else tk.no_truncation()
    want = [e.ids for e in tk.encode_batch(texts, add_special_tokens=special)]
    args = [str(binary), str(tokenizer_json)] + ([] if special else ["--no-special"])
    args += ["--max-length", str(max_length)] if max_length else []
    out = subprocess.run(args, input="\n".join(t.encode().hex() for t in texts) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    got = [[int(x) for x in line.split("|")[0].split()] if not line.startswith("error") else None for line in out]
    return sum(a == b for a, b in zip(want, got, strict=True)) / len(texts)


def time_both(bin_dir: Path, bundle: Path, manifest: dict, timed: list[str], threads: int):
    """(native stats, native outputs, Python stats): each runtime in one fresh process at ``threads``."""
    nat = subprocess.run([str(bin_dir / "edgedistill-native"),
                          "predict" if manifest.get("task") != "sentence-embedding" else "embed", str(bundle),
                          "--stdin", "--hex", "--timing", "--threads", str(threads)],
                         input="\n".join(t.encode().hex() for t in timed) + "\n", capture_output=True, text=True,
                         check=True)
    nat_out = [json.loads(x).get("probabilities") or json.loads(x).get("embedding") for x in nat.stdout.splitlines()]
    py = subprocess.run([sys.executable, "-c", PY_RUN, str(bundle), str(threads)], input=json.dumps(timed),
                        capture_output=True, text=True, check=True)
    return json.loads(nat.stderr.strip().splitlines()[-1]), nat_out, json.loads(py.stdout.strip().splitlines()[-1])


def p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True, help="an ExecuTorch (.pte) classifier or embedding bundle folder")
    ap.add_argument("--bpe-tokenizer", default=None, help="a byte-level BPE tokenizer.json (SmolLM2)")
    ap.add_argument("--llm-bundle", default=None, help="a causal-LM .pte bundle: greedy tokens native vs Python")
    ap.add_argument("--llm-prompts", type=int, default=4, help="real Brown sentences used as prompts")
    ap.add_argument("--llm-steps", type=int, default=32)
    ap.add_argument("--note", default="", help="a line for the Markdown (e.g. how busy the machine was)")
    ap.add_argument("--texts", type=int, default=200, help="real sentences timed per runtime")
    ap.add_argument("--brown", type=int, default=20000)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    from edgedistill.cache import cache_dir
    from edgedistill.native_build import build

    bin_dir = build()
    texts = sentences(a.brown)
    bundle = Path(a.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    rates = {"wordpiece": exact_rate(bin_dir / "edgedistill-tokenize", bundle / manifest["tokenizer"]["file"], texts,
                                     True, int(manifest.get("max_length", 512)))}
    bpe = a.bpe_tokenizer or (Path(a.llm_bundle) / "tokenizer.json" if a.llm_bundle else None) or next(
        iter(sorted(cache_dir("models", "llm").glob("SmolLM2*/tokenizer.json"))), None)
    if bpe:
        rates["bpe"] = exact_rate(bin_dir / "edgedistill-tokenize", Path(bpe), texts, False, 0)
    timed = texts[: a.texts]
    threads = threads_of(bundle)
    runs = {th: time_both(bin_dir, bundle, manifest, timed, th) for th in sorted({threads, 1}, reverse=True)}
    nat_stats, nat_out, py_stats = runs[threads]
    diff = max(abs(x - y) for a_, b_ in zip(nat_out, py_stats["out"], strict=True) for x, y in zip(a_, b_, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "b"
        shutil.copytree(bundle, bad)
        with open(bad / manifest["model_file"], "r+b") as f:
            f.seek(100)
            f.write(b"\x00\x01\x02")
        tampered = subprocess.run([str(bin_dir / "edgedistill-native"), "verify", str(bad)], capture_output=True)
    llm = {"llm_greedy_equal": None}
    if a.llm_bundle:
        # real prompts: Brown sentences of 8-40 words, the last of the slice read above
        brown = [t for t in texts[len(texts) - a.brown:] if 8 <= len(t.split()) <= 40]
        llm = llm_compare(bin_dir / "edgedistill-native", Path(a.llm_bundle), brown[-a.llm_prompts:], a.llm_steps)
    headline = {"tokenizer_exact_rate": min(rates.values()), "tokenizer_sentences": len(texts),
                "tokenizer_exact_rate_by_tokenizer": rates, "max_abs_diff_vs_python": diff,
                "llm_greedy_equal": llm["llm_greedy_equal"],
                "native_peak_rss_mb": round(nat_stats["peak_rss_mb"], 1),
                "python_peak_rss_mb": round(py_stats["peak_rss_mb"], 1),
                "native_p50_ms": round(p50(nat_stats["times_ms"]), 3),
                "python_p50_ms": round(p50(py_stats["times_ms"]), 3),
                "native_load_ms": round(nat_stats["load_ms"], 1), "python_load_ms": round(py_stats["load_ms"], 1),
                "tamper_refused": tampered.returncode != 0}
    llm_manifest = json.loads((Path(a.llm_bundle) / "manifest.json").read_text()) if a.llm_bundle else {}
    result = {"schema": "edgedistill.native-bench/1", "bundle": str(bundle),
              "scheme": manifest.get("quantization", {}).get("scheme"), "timed_texts": len(timed), "threads": threads,
              "headline": headline,
              "by_threads": {str(th): {"native_p50_ms": round(p50(n["times_ms"]), 3),
                                       "python_p50_ms": round(p50(q["times_ms"]), 3),
                                       "native_peak_rss_mb": round(n["peak_rss_mb"], 1),
                                       "python_peak_rss_mb": round(q["peak_rss_mb"], 1)}
                             for th, (n, _, q) in runs.items()},
              "llm": {**llm, "bundle": a.llm_bundle, "scheme": llm_manifest.get("scheme"),
                                            "model": llm_manifest.get("model")},
              "host_load_average": list(os.getloadavg()), "note": a.note,
              "command": " ".join(sys.argv)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "native.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in headline.items())
    thread_rows = "\n".join(f"| {th} | {v['native_p50_ms']} | {v['python_p50_ms']} | {v['native_peak_rss_mb']} | "
                            f"{v['python_peak_rss_mb']} |" for th, v in result["by_threads"].items())
    llm_rows = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in llm.items() if k != "llm_greedy_equal")
    shape = result["llm"]["model"] or {}
    llm_text = (f"\n\n## Causal LM: `{a.llm_bundle}` ({result['llm']['scheme']}, {shape.get('layers')} layers, "
                f"{shape.get('params')} parameters)\n\n{llm['llm_prompts']} Brown sentences as "
                f"prompts (no chat template), {llm['llm_steps']} greedy steps; Python: one process for all prompts, "
                f"native: one process per prompt.\n\n| metric | value |\n|---|---|\n{llm_rows}" if a.llm_bundle else "")
    (out / "native.md").write_text(f"# Native runtime vs Python runtime\n\nBundle `{bundle}` ({result['scheme']}), "
                                   f"{len(timed)} timed sentences, {threads} threads, each runtime in a fresh "
                                   f"process. "
                                   f"Host load average while it ran: {result['host_load_average'][0]:.1f} "
                                   f"(2 cores). {a.note}\n\n"
                                   f"| metric | value |\n|---|---|\n{rows}\n\nBy thread count (the headline is the "
                                   f"bundle's, {threads}):\n\n| threads | native p50 ms | Python p50 ms | native peak "
                                   f"RSS MB | Python peak RSS MB |\n|---|---|---|---|---|\n{thread_rows}{llm_text}\n\n"
                                   f"Command: `{result['command']}`\n")
    print(json.dumps(headline, indent=2))


if __name__ == "__main__":
    main()
