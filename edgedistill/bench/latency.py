"""Latency and peak memory, each model in its own fresh process, repeated.

Processes are interleaved round-robin (model A, B, C, A, B, C, ...) so a slow
patch of a shared machine does not land on one model only. The p50 reported
is the median of the per-process medians; their min and max are the spread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgedistillError
from ..progress import progress


@dataclass
class Job:
    name: str
    kind: str  # "torch" | "onnx"
    path: str
    threads: int


def make_inputs(tokenizer, texts: list[str], batch: int, seq: int, path: Path) -> Path:
    """Real text filling all ``seq`` positions: consecutive sentences joined, then truncated."""
    rows, start = [], 0
    for _ in range(batch):
        chunk = []
        while True:
            chunk.append(texts[start % len(texts)])
            start += 1
            ids = tokenizer(" ".join(chunk), truncation=True, max_length=seq)["input_ids"]
            if len(ids) >= seq or len(chunk) > 4 * seq:
                break
        rows.append(" ".join(chunk))
    feats = tokenizer(rows, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    np.savez(path, **{k: np.asarray(v, dtype=np.int64) for k, v in feats.items()})
    return path


def _run_worker(job: Job, inputs: Path, warmup: int, runs: int, pooling: str, normalize: bool) -> dict:
    spec = {"kind": job.kind, "path": job.path, "threads": job.threads, "inputs": str(inputs), "warmup": warmup,
            "runs": runs, "pooling": pooling, "normalize": normalize}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgedistill.bench.worker", f.name], capture_output=True,
                              text=True, env=env, timeout=1800)
    finally:
        os.unlink(f.name)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgedistillError(f"benchmark of {job.name} ({job.path}) failed: {tail}")
    return json.loads(lines[-1])


def measure(jobs: list[Job], inputs: Path, warmup: int, runs: int, repeats: int, pooling: str,
            normalize: bool) -> dict[tuple[str, int], dict]:
    raw: dict[tuple[str, int], list[dict]] = {}
    schedule = [(r, j) for r in range(repeats) for j in jobs]
    for _, job in progress(schedule, desc="benchmarking (one process per model)", unit="proc"):
        raw.setdefault((job.name, job.threads), []).append(
            _run_worker(job, inputs, warmup, runs, pooling, normalize))
    batch = int(np.load(inputs)["input_ids"].shape[0])
    return {key: summarize(results, batch) for key, results in raw.items()}


NOISY_SPREAD = 0.10
"""Per-process p50s further apart than this (relative to their median) flag the measurement as noisy."""


def summarize(results: list[dict], batch: int = 1) -> dict:
    p50s = [float(np.median(r["latencies_ms"])) for r in results]
    pooled = np.concatenate([r["latencies_ms"] for r in results])
    p50 = float(np.median(p50s))
    return {
        "p50_ms": p50,
        "p90_ms": float(np.median([np.percentile(r["latencies_ms"], 90) for r in results])),
        "p99_ms": float(np.percentile(pooled, 99)),
        "mean_ms": float(np.mean(pooled)),
        "p50_ms_per_process": p50s,
        "p50_spread_ms": [min(p50s), max(p50s)],
        "processes": len(results),
        "runs_per_process": len(results[0]["latencies_ms"]),
        "load_s": float(np.median([r["load_s"] for r in results])),
        "first_inference_s": float(np.median([r["first_inference_s"] for r in results])),
        "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in results])),
        "cpu_ms": float(np.median(np.concatenate([r["cpu_ms"] for r in results]))) if "cpu_ms" in results[0] else None,
        "throughput_per_s": batch * 1000.0 / p50 if p50 > 0 else None,
        "noisy": (max(p50s) - min(p50s)) / p50 > NOISY_SPREAD if p50 > 0 else False,
        "samples_ms": [round(float(x), 4) for x in pooled],
    }
