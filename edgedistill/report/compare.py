"""Merge the reports of several runs into one comparison (``edgedistill report``)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgedistillError
from ..fileutil import write_text_atomic
from .html import render_html
from .results import READABLE_SCHEMAS, quality_value


def load_report(path: str | Path) -> dict:
    """A bench report from a run folder, its report/ folder, or a report.json path."""
    p = Path(path)
    for cand in (p, p / "report.json", p / "report" / "report.json"):
        if cand.is_file():
            try:
                report = json.loads(cand.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise EdgedistillError(f"{cand}: not a readable JSON report ({e})") from None
            if report.get("kind") != "edgedistill.bench":
                raise EdgedistillError(f"{cand}: not an edgedistill bench report")
            if report.get("schema_version") not in READABLE_SCHEMAS:
                raise EdgedistillError(f"{cand}: report schema {report.get('schema_version')!r} is not supported "
                                       f"(this edgedistill reads {', '.join(map(str, READABLE_SCHEMAS))})")
            return report
    raise EdgedistillError(f"{p}: no bench report here (run 'edgedistill bench' for this run first)")


def comparison_markdown(reports: list[dict]) -> str:
    lines = ["# edgedistill comparison", "",
             "| run | model | quant | size MB | p50 ms | peak RSS MB | probe acc (encoders) / accuracy (classifiers) "
             "| host |", "|---|---|---|---|---|---|---|---|"]
    for r in reports:
        t = str(r["settings"]["threads"][0])
        for m in r["models"]:
            acc = quality_value(m["quality"])
            lines.append(f"| {r['recipe']['name']} | {m['name']} | {m['quantization']} | {m['size_bytes'] / 1e6:.2f} | "
                         f"{m['latency'][t]['p50_ms']:.2f} @{t} thr | {m['latency'][t]['peak_rss_mb']:.0f} | "
                         f"{'-' if acc is None else f'{100 * acc:.2f}'} | {r['host']['cpu']} |")
    lines += ["", "Latencies from different runs are comparable only when the host and thread count match."]
    return "\n".join(lines) + "\n"


def compare(paths: list[str | Path], out: str | Path) -> dict[str, Path]:
    reports = [load_report(p) for p in paths]
    out = Path(out)
    files = {"html": out / "comparison.html", "markdown": out / "comparison.md"}
    write_text_atomic(files["html"], render_html(reports))
    write_text_atomic(files["markdown"], comparison_markdown(reports))
    return files
