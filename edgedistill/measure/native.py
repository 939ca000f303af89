"""The native runtime (``native/``, the C API an app links) as a bench runner.

``edgedistill bench --model native:BUNDLE`` times an ExecuTorch bundle in ``edgedistill-native``: one fresh
process per run, no Python in it, so its peak RSS is what an app pays for the runtime, the model and the
tokenizer together. The process tokenizes the raw text itself (as an app would), so its latency includes
tokenization; the Python workers are fed token ids. It is not a backend of :mod:`edgedistill.backends`:
those run in the bench's Python worker, this one is a separate program.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..errors import EdgedistillError, ModelError

NAME = "native"
LABEL = "native-c++"
"""What reports print as this runner's ``runtime``."""
PREFIX = "native:"
"""``--model native:BUNDLE`` asks for this runner."""


def unavailable() -> str | None:
    """Why the native runtime cannot be built here (one line), or None once it is built (cached by source)."""
    from ..native_build import build

    try:
        build()
    except EdgedistillError as e:
        return str(e)
    return None


def check_bundle(manifest: dict, where: str) -> None:
    if manifest.get("backend") != "executorch":
        raise ModelError(f"{where}: the native runtime runs ExecuTorch (.pte) bundles only, this one is "
                         f"{manifest.get('backend', 'onnxruntime')!r}; export it with an et-* scheme")


def write_texts(path, rows: list[str]) -> None:
    """The raw text of each input row, beside the token ids the Python workers read (the native runner
    tokenizes it itself)."""
    path.with_suffix(".texts.json").write_text(json.dumps(rows))


def run(bundle: str, inputs, threads: int, warmup: int, runs: int) -> dict:
    """One fresh ``edgedistill-native`` process: the worker's JSON (:mod:`edgedistill.measure.worker`).

    A batch of B rows is B calls (the programs are fixed at batch 1, as in the Python ExecuTorch runner);
    its latency is their sum. The first pass is the first inference, then ``warmup`` passes, then ``runs``."""
    from ..native_build import build

    rows = json.loads(inputs.with_suffix(".texts.json").read_text())
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    command = "embed" if manifest.get("task") == "sentence-embedding" else "predict"
    args = [str(build() / "edgedistill-native"), command, bundle, "--stdin", "--hex", "--timing",
            "--threads", str(threads), "--repeat", str(1 + warmup + runs)]
    proc = subprocess.run(args, input="\n".join(r.encode().hex() for r in rows) + "\n", capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        raise EdgedistillError(f"benchmark of native:{bundle} failed: "
                               f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    b = len(rows)
    per = [sum(stats["times_ms"][k:k + b]) for k in range(0, len(stats["times_ms"]), b)]
    cpu = [sum(stats["cpu_ms"][k:k + b]) for k in range(0, len(stats["cpu_ms"]), b)]
    return {"latencies_ms": per[1 + warmup:], "cpu_ms": cpu[1 + warmup:], "first_inference_s": per[0] / 1000.0,
            "peak_rss_mb": stats["peak_rss_mb"], "load_s": stats["load_ms"] / 1000.0, "rss_before_load_mb": None,
            "rss_after_load_mb": stats["rss_after_load_mb"], "host_energy_mj": None, "threads": stats["threads"],
            "weights_bytes": None, "weights_source": "the .pte file, memory-mapped"}
