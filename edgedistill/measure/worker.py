"""Time one model in this (fresh) process and print one JSON line.

Run by the harness as ``python -m edgedistill.measure.worker SPEC.json``. One
model per process: several runtimes sharing a process on a 2-core machine
were seen to fall to single-thread speed, and peak RSS must be the model's.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _status_mb(key: str) -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    """Peak resident set of this process (VmHWM).

    Not ru_maxrss: after fork+exec Linux reports the parent's high-water
    mark there if it was larger, which made every model look as big as the harness.
    """
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_measured(backend: str | None, load, base: str = "VmHWM") -> tuple[object, dict]:
    """Import ``backend``'s runtime libraries, read the bare process's memory, then run ``load()`` timed.

    Returns (what ``load`` returned, {``load_s``, ``rss_before_load_mb``, ``rss_after_load_mb``}): the
    reading every fresh-process worker (encoder, classifier, causal LM) reports, so that a model's memory
    is what loading and running it adds. ``base``: ``VmHWM`` (the peak so far) or ``VmRSS`` (now)."""
    if backend is not None:
        from edgedistill.measure.runners import import_runtime

        import_runtime(backend)
    before = _rss_mb() if base == "VmHWM" else _status_mb(base)
    t0 = time.perf_counter()
    loaded = load()
    return loaded, {"load_s": time.perf_counter() - t0, "rss_before_load_mb": before,
                    "rss_after_load_mb": _status_mb("VmRSS")}


def main(argv: list[str]) -> int:
    import numpy as np

    from edgedistill.measure import rapl
    from edgedistill.measure.runners import load

    spec = json.loads(open(argv[0]).read())
    data = np.load(spec["inputs"])
    feed = {k: data[k] for k in data.files}
    loaded, mem = load_measured(spec["backend"], lambda: load(spec["backend"], spec["path"], spec["threads"],
                                                               spec["pooling"], spec["normalize"]))
    run = loaded.embed
    t0 = time.perf_counter()
    run(feed)
    first_s = time.perf_counter() - t0
    for _ in range(spec["warmup"]):
        run(feed)
    times, cpu = [], []
    energy_before = rapl.read()
    for _ in range(spec["runs"]):
        c0, t0 = time.process_time(), time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
        # CPU time of all threads: the device model scales this, not wall time,
        # so the host's thread count does not leak into device estimates.
        cpu.append((time.process_time() - c0) * 1000.0)
    host_j = rapl.joules_between(energy_before, rapl.read())
    peak = _rss_mb()
    # After timing: computing weight bytes may read the model file again and must not raise the peak.
    print(json.dumps({"latencies_ms": times, "cpu_ms": cpu, "first_inference_s": first_s, "peak_rss_mb": peak,
                      "host_energy_mj": None if host_j is None else host_j * 1000.0 / spec["runs"], **mem,
                      **loaded.memory()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
