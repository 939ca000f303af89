"""Latency and peak memory, each model and input shape in its own fresh process, repeated.

Processes are interleaved round-robin (model A, B, C, A, B, C, ...) so a slow
patch of a shared machine does not land on one model only. The p50 reported
is the median of the per-process medians; their min and max are the spread.
Every (batch, sequence length) cell of the grid gets its own processes, so a
large shape's allocations never sit in a small shape's peak RSS.
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
from . import native


@dataclass
class Job:
    name: str
    backend: str
    """The backend that runs it (:mod:`edgedistill.backends`): onnxruntime, executorch, torch."""
    path: str
    threads: int
    inputs: Path
    """An .npz of int64 features; its shape is the (batch, seq) cell."""
    pooling: str = "mean"
    normalize: bool = True

    @property
    def cell(self) -> tuple[int, int]:
        batch, seq = np.load(self.inputs)["input_ids"].shape
        return int(batch), int(seq)


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
    native.write_texts(path, rows)
    return path


def synthetic_inputs(vocab: int, batch: int, seq: int, path: Path) -> Path:
    """Token ids drawn from the vocabulary, for a model that came without a tokenizer."""
    rng = np.random.default_rng(0)
    ids = rng.integers(min(1000, vocab - 1), vocab, size=(batch, seq), dtype=np.int64)
    np.savez(path, input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids))
    return path


def run_worker(job: Job, warmup: int, runs: int) -> dict:
    if job.backend == native.NAME:  # a C++ program, not a Python worker
        return native.run(job.path, job.inputs, job.threads, warmup, runs)
    spec = {"backend": job.backend, "path": job.path, "threads": job.threads, "inputs": str(job.inputs),
            "warmup": warmup, "runs": runs, "pooling": job.pooling, "normalize": job.normalize}
    return spawn_worker("edgedistill.measure.worker", spec, job.threads, f"{job.name} ({job.path})")


def spawn_worker(module: str, spec: dict, threads: int, label: str) -> dict:
    """Run ``python -m MODULE SPEC.json`` in a fresh process with ``threads`` threads; its last JSON line."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([sys.executable, "-m", module, f.name], capture_output=True,
                              text=True, env=env, timeout=1800)
    finally:
        os.unlink(f.name)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgedistillError(f"benchmark of {label} failed: {tail}")
    return json.loads(lines[-1])


def measure(jobs: list[Job], warmup: int, runs: int, repeats: int) -> dict[tuple[str, int, int, int], dict]:
    """Summaries keyed by (model name, threads, batch, seq)."""
    raw: dict[tuple[str, int, int, int], list[dict]] = {}
    schedule = [(r, j) for r in range(repeats) for j in jobs]
    for _, job in progress(schedule, desc="benchmarking (one process per model and shape)", unit="proc"):
        raw.setdefault((job.name, job.threads, *job.cell), []).append(run_worker(job, warmup, runs))
    return {key: summarize(results, key[2]) for key, results in raw.items()}


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
        "rss_after_load_mb": _median_or_none(results, "rss_after_load_mb"),
        "weights_bytes": results[0].get("weights_bytes"),
        "weights_source": results[0].get("weights_source"),
        "arena_bytes": _median_or_none(results, "arena_bytes"),
        "arena_note": results[0].get("arena_note"),
        # Whole-host package energy per inference while this model ran (RAPL); never device energy.
        "host_energy_mj": _median_or_none(results, "host_energy_mj"),
        "host_energy_kind": "measured-rapl (host)" if _median_or_none(results, "host_energy_mj") is not None
        else None,
        "cpu_ms": float(np.median(np.concatenate([r["cpu_ms"] for r in results]))) if "cpu_ms" in results[0] else None,
        "throughput_per_s": batch * 1000.0 / p50 if p50 > 0 else None,
        "noisy": (max(p50s) - min(p50s)) / p50 > NOISY_SPREAD if p50 > 0 else False,
        "samples_ms": [round(float(x), 4) for x in pooled],
    }


def _median_or_none(results: list[dict], key: str) -> float | None:
    vals = [r[key] for r in results if r.get(key) is not None]
    return float(np.median(vals)) if vals else None
