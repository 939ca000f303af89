"""Time one causal LM in this (fresh) process: prefill, time to first token, decode; print one JSON line.

Run by :mod:`edgedistill.llm.bench` as ``python -m edgedistill.llm.bench_worker SPEC.json`` through the shared
launcher (:func:`edgedistill.measure.latency.spawn_worker`); loading and the memory readings around it are
the encoder worker's (:func:`edgedistill.measure.worker.load_measured`).
``kind`` is ``bundle`` (any causal-LM bundle, through its scheme's loader) or
``eager`` (an HF folder in PyTorch, cache on: the reference a user would run).
The prompt is fixed English text, so every model sees the same tokens.
"""

from __future__ import annotations

import json
import sys
import time

PROMPT_TEXT = ("The committee met on Tuesday to discuss the new budget for the city schools. Several members "
               "said that the money would not be enough to pay the teachers, and the mayor agreed to look again "
               "at the plan before the next meeting of the council in the spring. ")


class _EagerCached:
    """HF model with its dynamic KV cache: ``step(ids, pos)`` as the exported programs do it."""

    def __init__(self, model, max_cache_len: int):
        self.model, self.max_cache_len, self.past = model, max_cache_len, None

    def step(self, ids, pos):
        import torch

        if pos == 0:
            self.past = None
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([ids]), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[0, -1].float()


def _load(spec: dict):
    if spec["kind"] == "bundle":
        from edgedistill.llm.bundle import open_llm_bundle

        b = open_llm_bundle(spec["path"], threads=spec["threads"])
        return b.lm, lambda text: b.tokenizer.encode(text, add_special_tokens=False).ids
    import torch

    from edgedistill.llm.teacher import load_causal_lm

    torch.set_num_threads(spec["threads"])
    model, tok = load_causal_lm(spec["path"])
    return (_EagerCached(model, spec["prompt_tokens"] + spec["new_tokens"] + 1),
            lambda text: tok(text, add_special_tokens=False)["input_ids"])


def prompt_ids(encode, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += list(encode(PROMPT_TEXT))
    return ids[:n]


def _generate(lm, ids: list[int], new_tokens: int) -> dict:
    """Greedy, no stop tokens (every model decodes the same count)."""
    t0 = time.perf_counter()
    logits = lm.step(ids, 0)
    tok = int(logits.argmax())
    prefill = time.perf_counter() - t0
    walls, cpus = [], []
    pos = len(ids)
    for _ in range(new_tokens - 1):
        c0, w0 = time.process_time(), time.perf_counter()
        tok = int(lm.step([tok], pos).argmax())
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        pos += 1
    return {"prefill_s": prefill, "decode_s": walls, "decode_cpu_s": cpus}


def main(argv: list[str]) -> int:
    from edgedistill.measure.worker import _rss_mb, load_measured

    spec = json.loads(open(argv[0]).read())
    # The runtime libraries first, so that the peak over this base is the model's own share.
    import torch  # noqa: F401
    import transformers  # noqa: F401

    backend = None
    if spec["kind"] == "bundle":  # and the bundle's own runtime (its backend's modules)
        from edgedistill.runtime.format import BundleFiles, read_manifest

        files = BundleFiles(spec["path"])
        try:
            backend = read_manifest(files).get("backend", "onnxruntime")
        finally:
            files.close()
    (lm, encode), mem = load_measured(backend, lambda: _load(spec), base="VmRSS")
    ids = prompt_ids(encode, spec["prompt_tokens"])
    for _ in range(spec.get("warmup", 1)):
        _generate(lm, ids, 4)
    run = _generate(lm, ids, spec["new_tokens"])
    print(json.dumps({**mem, "peak_rss_mb": _rss_mb(), "peak_over_runtime_mb": _rss_mb() - mem["rss_before_load_mb"],
                      "prompt_tokens": len(ids), **run}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
