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


def main(argv: list[str]) -> int:
    import numpy as np

    from edgedistill.measure import rapl
    from edgedistill.measure.runners import import_runtime, load

    spec = json.loads(open(argv[0]).read())
    data = np.load(spec["inputs"])
    feed = {k: data[k] for k in data.files}
    import_runtime(spec["backend"])
    base_rss = _rss_mb()
    t0 = time.perf_counter()
    loaded = load(spec["backend"], spec["path"], spec["threads"], spec["pooling"], spec["normalize"])
    run = loaded.embed
    load_s = time.perf_counter() - t0
    loaded_rss = _status_mb("VmRSS")
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
    print(json.dumps({"latencies_ms": times, "cpu_ms": cpu, "load_s": load_s, "first_inference_s": first_s,
                      "peak_rss_mb": peak,
                      "host_energy_mj": None if host_j is None else host_j * 1000.0 / spec["runs"], "rss_before_load_mb": base_rss, "rss_after_load_mb": loaded_rss,
                      **loaded.memory()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
