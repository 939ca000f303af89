"""Time one model in this (fresh) process and print one JSON line.

Run by the harness as ``python -m edgedistill.bench.worker SPEC.json``. One
model per process: several runtimes sharing a process on a 2-core machine
were seen to fall to single-thread speed, and peak RSS must be the model's.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    """Peak resident set of this process (VmHWM).

    Not ru_maxrss: after fork+exec Linux reports the parent's high-water
    mark there if it was larger, which made every model look as big as the harness.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _torch_runner(path: str, threads: int, pooling: str, normalize: bool):
    import torch

    torch.set_num_threads(threads)
    from edgedistill.models.encode import pool
    from edgedistill.models.loading import load_encoder

    model, _ = load_encoder(path)

    def run(feed):
        with torch.inference_mode():
            t = {k: torch.from_numpy(v) for k, v in feed.items()}
            hidden = model(**t).last_hidden_state
            return pool(hidden, t["attention_mask"], pooling, normalize)

    return run


def _onnx_runner(path: str, threads: int):
    from edgedistill.export.onnx import run_session, session

    sess = session(path, threads)
    return lambda feed: run_session(sess, feed)


def main(argv: list[str]) -> int:
    import numpy as np

    spec = json.loads(open(argv[0]).read())
    data = np.load(spec["inputs"])
    feed = {k: data[k] for k in data.files}
    base_rss = _rss_mb()
    t0 = time.perf_counter()
    if spec["kind"] == "torch":
        run = _torch_runner(spec["path"], spec["threads"], spec["pooling"], spec["normalize"])
    else:
        run = _onnx_runner(spec["path"], spec["threads"])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(feed)
    first_s = time.perf_counter() - t0
    for _ in range(spec["warmup"]):
        run(feed)
    times, cpu = [], []
    for _ in range(spec["runs"]):
        c0, t0 = time.process_time(), time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
        # CPU time of all threads: the device model scales this, not wall time,
        # so the host's thread count does not leak into device estimates.
        cpu.append((time.process_time() - c0) * 1000.0)
    print(json.dumps({"latencies_ms": times, "cpu_ms": cpu, "load_s": load_s, "first_inference_s": first_s,
                      "peak_rss_mb": _rss_mb(), "rss_before_load_mb": base_rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
