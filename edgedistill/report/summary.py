"""The short table printed at the end of ``edgedistill run`` / ``bench``."""

from __future__ import annotations

import click

from .results import metric_label, quality_value, speedup_text


def print_summary(report: dict) -> None:
    threads = [str(t) for t in report["settings"]["threads"]]
    s = report["settings"]
    click.echo(f"\nbatch {s['batch_size']}, seq {s['seq_length']}, p50 over {s['repeats']} fresh processes; "
               f"host {report['host']['cpu']} ({report['host']['cores']} cores)")
    header = f"{'model':19s} {'quant':13s} {'size MB':>8s} " + " ".join(f"{'p50 ms@' + t:>10s}" for t in threads) \
        + f" {'RSS MB':>7s} {metric_label(report):>9s}"
    click.echo(header)
    click.echo("-" * len(header))
    for m in report["models"]:
        acc = quality_value(m["quality"])
        click.echo(f"{m['name'][:19]:19s} {m['quantization']:13s} {m['size_bytes'] / 1e6:8.2f} "
                   + " ".join(f"{m['latency'][t]['p50_ms']:10.2f}" for t in threads)
                   + f" {m['latency'][threads[0]]['peak_rss_mb']:7.0f} "
                   + (f"{100 * acc:8.2f}%" if acc is not None else f"{'-':>9s}"))
    noisy = [m["name"] for m in report["models"] if any(v.get("noisy") for v in m["latency"].values())]
    if noisy:
        click.echo(f"warning: noisy timings (per-process p50s >10% apart) for {', '.join(noisy)}")
    h = report["headline"]
    what = "accuracy" if metric_label(report) == "accuracy" else "probe accuracy"
    if report.get("mode") == "models":
        for name, v in (h.get("vs_teacher") or {}).items():
            ret = v.get("quality_retention")
            click.echo(f"{name} vs teacher: {v['size_ratio']:.2f}x smaller, {speedup_text(v)}"
                       + (f", {100 * ret:.1f}% of its {what}" if ret else ""))
    elif h.get("size_ratio"):
        ret = h.get("quality_retention")
        click.echo(f"\nstudent vs teacher: {h['size_ratio']:.1f}x smaller, {speedup_text(h, fmt='.1f')} "
                   f"(p50, {threads[0]} threads)" + (f", {100 * ret:.1f}% of its {what}" if ret else ""))
    v = h.get("vs_teacher_int8")
    if v:
        click.echo(f"student vs teacher int8: {v['size_ratio']:.2f}x smaller, {speedup_text(v)}"
                   + (f", {100 * v['quality_retention']:.1f}% of its {what}" if v.get("quality_retention") else ""))
    files = report["files"]
    click.echo(f"report: {files['html']} (Markdown: {files['markdown']}, JSON: {files['json']})")
