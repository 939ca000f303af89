"""Reproduce the README's quickstart numbers and store them in benchmarks/results/.

    python benchmarks/quickstart.py            # ~5-10 min on 2 cores

Runs the demo recipe end to end (distill -> export -> bench, each benchmarked
model in its own fresh process) and copies the report to
benchmarks/results/quickstart.json and .md. Run it on an otherwise idle
machine: 2-core timings are fragile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "quickstart.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "quickstart-benchmark"))
    args = ap.parse_args()

    import edgedistill as ed

    t0 = time.perf_counter()
    report = ed.run(args.recipe, args.out)
    report["wall_seconds_end_to_end"] = time.perf_counter() - t0
    report["command"] = "python benchmarks/quickstart.py"
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "quickstart.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copyfile(Path(args.out) / "report" / "report.md", results / "quickstart.md")
    with open(results / "quickstart.md", "a") as f:
        f.write(f"End to end (distill + export + bench): {report['wall_seconds_end_to_end'] / 60:.1f} min. "
                f"Produced by `{report['command']}`.\n")
    h = report["headline"]
    print(json.dumps({k: h[k] for k in ("size_ratio", "latency_p50_speedup", "quality_retention", "vs_teacher_int8")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
