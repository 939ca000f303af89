"""Causal-LM bench: prefill and decode tokens/s, time to first token, peak RSS, size, modelled energy per token.

Each (model, thread count, repeat) runs in its own fresh process (the encoder
bench's worker pattern, :func:`edgedistill.measure.latency.spawn_worker`),
interleaved round-robin; figures are medians over the processes, with their
min and max. Device latency and energy per decoded token (and of the prefill) are
*modelled* (``modelled-v2``, see :mod:`edgedistill.measure.energy`) from the
model's shape and scheme and the target's constants, never from host timings;
they carry lo / central / hi bands and are never a measurement on the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError
from ..fileutil import write_json_atomic, write_text_atomic
from ..progress import progress, say

SCHEMA = "edgedistill.llm-bench/1"


@dataclass
class LLMModel:
    name: str
    kind: str
    """``bundle`` or ``eager`` (an HF folder run in PyTorch)."""
    path: str
    role: str = "student"
    """``student``, ``teacher`` (the same-scheme reference for ratios) or ``reference``."""


def describe(m: LLMModel) -> dict:
    """Size, scheme and shape of a model, checked before any process starts."""
    if m.kind == "bundle":
        from ..export.schemes import canonical
        from ..runtime.format import verify_bundle
        from .bundle import check_causal_lm

        man = verify_bundle(m.path)
        check_causal_lm(man, m.path)
        return {"scheme": canonical(man["scheme"]), "backend": man["backend"],
                "size_bytes": man["sizes"]["model_bytes"], "model": man["model"],
                "max_context": man["generation"]["max_context"]}
    from .bundle import model_info

    folder = Path(m.path)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not a Hugging Face causal-LM folder (no config.json)")
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    info = model_info(cfg, size // 4)
    return {"scheme": "eager-fp32", "backend": "torch", "size_bytes": size, "model": info,
            "max_context": int(getattr(cfg, "max_position_embeddings", 2048))}


def decode_macs(info: dict, context: int, scheme: str) -> dict[str, float]:
    """Multiply-accumulates of one decode step at ``context`` tokens, per arithmetic class."""
    from ..measure.workload import LMShape, decode_workload, precision_for_scheme

    return decode_workload(LMShape.from_info(info), context, precision_for_scheme(scheme)).macs


def _summary(runs: list[dict], new_tokens: int) -> dict:
    prefill = [r["prompt_tokens"] / r["prefill_s"] for r in runs]
    decode = [len(r["decode_s"]) / sum(r["decode_s"]) for r in runs]
    med = lambda xs: float(np.median(xs))  # noqa: E731
    return {"prefill_tokens_per_s": med(prefill), "prefill_spread": [min(prefill), max(prefill)],
            "decode_tokens_per_s": med(decode), "decode_spread": [min(decode), max(decode)],
            "time_to_first_token_ms": med([r["prefill_s"] * 1000 for r in runs]),
            "decode_ms_per_token": med([1000 * float(np.median(r["decode_s"])) for r in runs]),
            "decode_cpu_ms_per_token": med([1000 * float(np.median(r["decode_cpu_s"])) for r in runs]),
            "peak_rss_mb": med([r["peak_rss_mb"] for r in runs]),
            "peak_over_runtime_mb": med([r["peak_over_runtime_mb"] for r in runs]), "load_s": med([r["load_s"] for r in runs]),
            "processes": len(runs)}


def _energy(desc: dict, prompt_tokens: int, context: int, targets: list[str]) -> dict:
    """modelled-v2 per decoded token (at ``context``) and for the prefill; no host measurement enters."""
    from ..measure.energy import model_workload
    from ..measure.workload import LMShape, decode_workload, precision_for_scheme, prefill_workload
    from ..targets import load_target

    shape, prec = LMShape.from_info(desc["model"]), precision_for_scheme(desc["scheme"])
    decode, prefill = decode_workload(shape, context, prec), prefill_workload(shape, prompt_tokens, prec)
    out = {}
    for name in targets:
        t = load_target(name)
        m, p = model_workload(t, decode, cold=True), model_workload(t, prefill, cold=True)
        out[name] = {"energy_kind": m["energy_kind"], "energy_mj_per_token": m["energy_mj"],
                     "t_dev_ms_per_token": m["t_dev_ms"], "bound": m["bound"], "dominant": m["dominant"],
                     "decode_tokens_per_s": {"lo": 1e3 / m["t_dev_ms"]["hi"], "central": 1e3 / m["t_dev_ms"]["central"],
                                            "hi": 1e3 / m["t_dev_ms"]["lo"]},
                     "prefill_ms": p["t_dev_ms"], "prefill_energy_mj": p["energy_mj"], "prefill_bound": p["bound"],
                     "constants_version": m["constants_version"], "macs_per_token": decode.macs,
                     "bytes_per_token": m["dram_bytes"]}
    return out


def run_llm_bench(models: list[LLMModel], out: str | Path, threads: tuple[int, ...] = (1, 2), repeats: int = 3,
                  prompt_tokens: int = 64, new_tokens: int = 32, targets: list[str] | None = None) -> dict:
    """Benchmark causal LMs; writes OUT/llm_bench.json and OUT/llm_bench.md and returns the report."""
    from ..measure.latency import spawn_worker

    out = Path(out)
    targets = targets or ["phone"]
    if not models:
        raise DataError("nothing to benchmark: give at least one bundle")
    if any(t < 1 for t in threads):
        raise DataError(f"thread counts must be >= 1, got {list(threads)}")
    descs = {m.name: describe(m) for m in models}
    for m in models:
        if prompt_tokens + new_tokens >= descs[m.name]["max_context"]:
            raise DataError(f"{m.path}: {prompt_tokens} prompt + {new_tokens} new tokens do not fit its context of "
                            f"{descs[m.name]['max_context']}; lower --prompt-tokens / --new-tokens")
    raw: dict[tuple[str, int], list[dict]] = {}
    schedule = [(t, m) for _ in range(repeats) for t in threads for m in models]
    for t, m in progress(schedule, desc="LLM bench (one process per model, threads and repeat)", unit="proc"):
        spec = {"kind": m.kind, "path": str(m.path), "threads": t, "prompt_tokens": prompt_tokens,
                "new_tokens": new_tokens, "warmup": 1}
        raw.setdefault((m.name, t), []).append(spawn_worker("edgedistill.llm.bench_worker", spec, t, m.name))
    context = prompt_tokens + new_tokens // 2
    rows = []
    for m in models:
        d = descs[m.name]
        per = {str(t): _summary(raw[(m.name, t)], new_tokens) for t in threads}
        rows.append({"name": m.name, "role": m.role, "kind": m.kind, "path": str(m.path), "scheme": d["scheme"],
                     "backend": d["backend"], "size_bytes": d["size_bytes"], "params": d["model"]["params"],
                     "threads": per, "energy_per_token": _energy(d, prompt_tokens, context, targets)})
    report = {"schema": SCHEMA, "settings": {"threads": list(threads), "repeats": repeats,
                                             "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                                             "energy_context_tokens": context, "targets": targets},
              "energy_note": "modelled-v2: from the model's counted MACs, operator launches and bytes of weights "
                             "and KV cache per decoded token and the target's constants (decode = the larger of "
                             "compute and memory traffic, plus dispatch); not measured on a device, and no host "
                             "measurement enters it; lo/central/hi bands",
              "models": rows, "ratios": ratios(rows, threads)}
    out.mkdir(parents=True, exist_ok=True)
    report["markdown_table"] = markdown(report)
    write_json_atomic(out / "llm_bench.json", report)
    write_text_atomic(out / "llm_bench.md", report["markdown_table"] + "\n")
    say(f"LLM bench: {out / 'llm_bench.json'}")
    return report


def ratios(rows: list[dict], threads) -> dict:
    """Student vs the teacher row (same scheme): size ratio and decode speed-up per thread count."""
    teacher = next((r for r in rows if r["role"] == "teacher"), None)
    if teacher is None:
        return {}
    out = {}
    for r in rows:
        if r is teacher or r["role"] != "student":
            continue
        out[r["name"]] = {
            "vs": teacher["name"], "size_ratio": teacher["size_bytes"] / r["size_bytes"],
            "decode_speedup": {str(t): r["threads"][str(t)]["decode_tokens_per_s"]
                               / teacher["threads"][str(t)]["decode_tokens_per_s"] for t in threads}}
    return out


def markdown(report: dict) -> str:
    lines = ["| model | scheme | size MB | threads | prefill tok/s | decode tok/s | first token ms | peak RSS MB "
             "(over runtime) | energy mJ/token (modelled, lo-hi) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        tname = report["settings"]["targets"][0]
        e = r["energy_per_token"][tname]["energy_mj_per_token"]
        for t, s in r["threads"].items():
            lines.append(f"| {r['name']} | {r['scheme']} | {r['size_bytes'] / 1e6:.1f} | {t} | "
                         f"{s['prefill_tokens_per_s']:.1f} | {s['decode_tokens_per_s']:.1f} | "
                         f"{s['time_to_first_token_ms']:.1f} | {s['peak_rss_mb']:.0f} ({s['peak_over_runtime_mb']:.0f}) | "
                         f"{e['central']:.3g} ({e['lo']:.2g}-{e['hi']:.2g}, {tname}) |")
    for name, q in report.get("ratios", {}).items():
        sp = ", ".join(f"{v:.2f}x at {t} thr" for t, v in q["decode_speedup"].items())
        lines.append(f"\n{name} vs {q['vs']}: {q['size_ratio']:.2f}x fewer bytes, decode {sp}.")
    lines += ["", "Modelled on the device (modelled-v2, not measured; central [lo-hi]):", "",
              "| model | target | decode tok/s | ms/token | bound | prefill ms |", "|---|---|---|---|---|---|"]
    for r in report["models"]:
        for tname, e in r["energy_per_token"].items():
            if "decode_tokens_per_s" not in e:  # a report written by an older version
                continue
            d, ms, p = e["decode_tokens_per_s"], e["t_dev_ms_per_token"], e["prefill_ms"]
            lines.append(f"| {r['name']} | {tname} | {d['central']:.3g} [{d['lo']:.3g}-{d['hi']:.3g}] | "
                         f"{ms['central']:.3g} [{ms['lo']:.2g}-{ms['hi']:.2g}] | {e['bound']['central']} | "
                         f"{p['central']:.3g} [{p['lo']:.3g}-{p['hi']:.3g}] |")
    return "\n".join(lines)


def load_report(out: str | Path) -> dict:
    return json.loads((Path(out) / "llm_bench.json").read_text())
