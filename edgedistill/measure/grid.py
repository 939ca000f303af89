"""The latency grid: which (model, threads, batch, seq) processes to start, and how results are laid out.

The headline cell (the first batch size with the first sequence length) is measured at every thread
count; the other cells at the first thread count only, which keeps a grid from multiplying the run
time by the number of thread counts as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .latency import Job, make_inputs, synthetic_inputs


@dataclass
class Timed:
    """One model to time: its backend, what it loads, and how to make its inputs."""

    name: str
    backend: str
    path: str
    tokenizer: object | None = None
    """Real test text is tokenized with this; without one, ``vocab`` random ids are used."""
    vocab: int | None = None
    pooling: str = "mean"
    normalize: bool = True


def cells(batches: list[int], seqs: list[int]) -> list[tuple[int, int]]:
    """Every (batch, seq), the headline cell first."""
    return [(b, s) for b in batches for s in seqs]


def plan(models: list[Timed], threads: list[int], batches: list[int], seqs: list[int], texts: list[str],
         tmp: Path) -> list[Job]:
    inputs: dict[tuple, Path] = {}

    def feed(m: Timed, b: int, s: int) -> Path:
        key = (id(m.tokenizer) if m.tokenizer is not None else ("vocab", m.vocab), b, s)
        if key not in inputs:
            path = tmp / f"inputs-{len(inputs)}.npz"
            inputs[key] = (make_inputs(m.tokenizer, texts, b, s, path) if m.tokenizer is not None
                           else synthetic_inputs(m.vocab or 30000, b, s, path))
        return inputs[key]

    jobs = []
    for i, (b, s) in enumerate(cells(batches, seqs)):
        for m in models:
            for th in (threads if i == 0 else threads[:1]):
                jobs.append(Job(m.name, m.backend, m.path, th, feed(m, b, s), m.pooling, m.normalize))
    return jobs


def layout(lat: dict, name: str, threads: list[int], batches: list[int], seqs: list[int]) -> tuple[dict, list]:
    """(headline latency keyed by thread count, the grid as a list of cells) for one model."""
    b0, s0 = batches[0], seqs[0]
    head = {str(th): lat[(name, th, b0, s0)] for th in threads}
    grid = []
    for b, s in cells(batches, seqs):
        r = lat[(name, threads[0], b, s)]
        grid.append({"batch_size": b, "seq_length": s, "threads": threads[0],
                     **{k: v for k, v in r.items() if k != "samples_ms"}})
    return head, grid
