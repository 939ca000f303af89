"""LLM KD training speed on the CPU: fp32 vs ``precision = "bf16"`` autocast, same trainer, same batch.

Our trainer (``train_causal``, top-32 KD + CE from a cached teacher top-k) on the SmolLM2-135M shape with a
15-layer student (random weights: speed does not depend on them), batch 4 x 256, as ``benchmarks/llm.py`` and
the CPU recipe train. Every run is a fresh process; the precisions alternate within each round, so both see
the same host; the first step of each run (warm-up) is left out. The headline is the ratio of the medians and
the median of the per-round paired ratios. bf16 autocast is fast only where the CPU has bf16 matrix units
(AMX or AVX512-BF16, reported under ``cpu_bf16``); elsewhere it is emulated and slower.

    HF_HUB_OFFLINE=1 python benchmarks/llm_train_precision.py            # ~6 min on 2 cores; nothing else heavy
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgedistill.hostcpu import cpu_bf16_units

HERE = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16")


def units(found: list[str] | None) -> str:
    return "unknown" if found is None else ", ".join(found) or "none"


def worker(precision: str, steps: int) -> None:
    sys.path.insert(0, str(HERE))
    from train_throughput import llm_kd

    with tempfile.TemporaryDirectory(prefix="edgedistill-precision-") as tmp:
        r = llm_kd("cpu", 4, 256, steps, Path(tmp), precision=precision)
    print(json.dumps(r))


def paired(a: list[float], b: list[float]) -> dict:
    ratios = sorted(y / x for x, y in zip(a, b, strict=True))
    return {"ratio_of_medians": round(statistics.median(b) / statistics.median(a), 3),
            "paired_median": round(statistics.median(ratios), 3), "paired_min": round(ratios[0], 3),
            "paired_max": round(ratios[-1], 3)}


def markdown(res: dict) -> str:
    h = res["headline"]
    lines = ["# LLM KD training speed on the CPU: fp32 vs bf16 autocast", "",
             f"`{res['command']}` on {res['host']} (bf16 units: {units(res['cpu_bf16'])}), "
             f"torch {res['torch']}, {res['measured']}. {res['rounds']} rounds, a fresh process per run, "
             f"{res['steps']} steps each (the first left out), batch 4 x 256, 15-layer SmolLM2-shaped student.", "",
             "| precision | train tok/s per run | median |", "|---|---|---|"]
    for p in PRECISIONS:
        runs = res["tok_s"][p]
        lines.append(f"| {p} | {', '.join(f'{x:.1f}' for x in runs)} | {statistics.median(runs):.1f} |")
    lines += ["", f"bf16 / fp32: **{h['bf16_speedup']}x** (ratio of medians; paired per round "
              f"{h['paired_median']}x [{h['paired_min']}-{h['paired_max']}])."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="training steps per run (the first is left out)")
    ap.add_argument("--out", default=str(HERE / "results" / "llm_train_precision"))
    ap.add_argument("--worker", choices=PRECISIONS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.steps)
        return 0
    import torch

    from edgedistill.fileutil import write_results
    from edgedistill.measure.calibrate import cpu_name

    tok_s: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for rnd in range(a.rounds):
        for p in PRECISIONS if rnd % 2 == 0 else PRECISIONS[::-1]:
            out = subprocess.run([sys.executable, __file__, "--worker", p, "--steps", str(a.steps)],
                                 capture_output=True, text=True, check=True)
            tok_s[p].append(json.loads(out.stdout.strip().splitlines()[-1])["train_tok_s"])
            print(f"round {rnd + 1}: {p} {tok_s[p][-1]} tok/s", file=sys.stderr, flush=True)
    h = paired(tok_s["fp32"], tok_s["bf16"])
    head = {"bf16_speedup": h.pop("ratio_of_medians"), **h,
            "fp32_tok_s": statistics.median(tok_s["fp32"]), "bf16_tok_s": statistics.median(tok_s["bf16"])}
    res = {"headline": head,
           "tok_s": tok_s, "rounds": a.rounds, "steps": a.steps, "cpu_bf16": cpu_bf16_units(),
           "host": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
           "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d"),
           "command": " ".join(["python benchmarks/llm_train_precision.py", *sys.argv[1:]])}
    write_results(a.out, res, markdown(res))
    print(json.dumps(res["headline"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
