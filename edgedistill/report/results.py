"""Bench report: the versioned JSON schema's headline block and the Markdown rendering.

Schema (``schema_version`` 2), top-level keys:

* ``headline``: ``size_ratio`` (teacher fp32 weights bytes / student bundle model bytes),
  ``latency_p50_speedup`` (teacher PyTorch fp32 p50 / student bundle p50, same run, target threads,
  headline cell of the grid: the median over the schedule's rounds of the two models' same-round ratio,
  each round listed in ``latency_p50_speedup_rounds``; ``latency_noisy`` when those ratios spread over 10%:
  their full range below 5 rounds, their interquartile range from 5 on),
  ``quality_retention`` (student bundle probe accuracy / teacher probe accuracy),
  ``vs_teacher_int8`` (the same three against the teacher quantised to int8 ONNX),
  ``settings`` (host, threads, batch, seq_length) and the absolute figures behind the ratios.
  In ``mode: "models"`` (``edgedistill bench --model``), ``vs_teacher`` holds the three ratios for
  every model against ``--teacher`` and the top-level ratios are those of the first model.
* ``models``: one entry per model: ``name``, ``role``, ``runtime`` (ExecuTorch entries add
  ``xnnpack_delegated_share``, the share of operators delegated to XNNPACK), ``quantization``, ``path``,
  ``size_bytes``, ``latency`` (the headline cell, batch ``settings.batch_size`` x
  ``settings.seq_length``, per thread count: ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``,
  ``p50_ms_per_process``, ``p50_spread_ms``, ``load_s``, ``first_inference_s``, ``peak_rss_mb``,
  ``rss_after_load_mb``, ``weights_bytes`` with ``weights_source`` (what the runtime holds as
  weights: ONNX initializers, torch parameters + buffers), ``arena_bytes`` and ``arena_note``
  (null with the reason when the runtime does not expose its arena), ``throughput_per_s``,
  ``noisy``, ``samples_ms``), ``latency_grid`` (a list with one cell per (batch, seq) of
  ``settings.grid``, each ``batch_size``, ``seq_length``, ``threads`` and the fields above except
  ``samples_ms``), ``quality`` (``probe_accuracy``, ``probe_accuracy_se``, ``probe_test_n``,
  ``cosine_to_teacher``, ``spearman_vs_teacher``; exported models add ``batch_dependence``, the max abs
  difference of a sentence's output alone vs inside a padded batch of 16, protocol in
  ``quality.batch_dependence``), optionally ``quality_note`` (why quality was
  skipped), and, when the encoder shape is known, ``params``, ``macs``, ``energy`` per target.
* ``settings``: ``batch_size`` and ``seq_length`` of the headline cell, ``grid``
  (``batch_sizes``, ``seq_lengths``, ``threads`` the grid was measured at), ``threads``, ``warmup``,
  ``runs``, ``repeats``.
* classification runs (``task = "classification"``, ``quality.metric = "accuracy"``): each model's
  ``quality`` holds ``accuracy``, ``accuracy_se``, ``test_n``, ``agreement_with_teacher`` instead of the
  probe figures (and ``batch_dependence`` on the logits); the headline adds ``accuracy_retention``
  (= ``quality_retention``); a bundle with early exits adds ``early_exits`` (``layers``, ``note``,
  ``thresholds``: accuracy and exit share per threshold).
* ``host``, ``target``, ``quality``, ``distill``, ``energy``, ``recipe``, ``mode`` (absent for a run
  folder, ``"models"`` for ``--model``), and ``files`` (where the reports were written).

Version 2 added ``latency_grid``, ``settings.grid``, the memory fields and ``mode``; version 1
reports are still read by ``edgedistill report``.
"""

from __future__ import annotations

import statistics

from ..quality.batch_dependence import PROTOCOL as BATCH_PROTOCOL
from ..quality.metrics import paired_difference_se
from ..measure.device_model import energy_ratios
from ..measure.energy import ENERGY_KIND, sig2
from ..measure.latency import NOISY_SPREAD

REPORT_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)


def quality_value(q: dict | None) -> float | None:
    """A model's quality figure: probe accuracy (encoders) or test accuracy (classifiers)."""
    q = q or {}
    return q.get("probe_accuracy", q.get("accuracy"))


def quality_se(q: dict | None) -> float | None:
    q = q or {}
    return q.get("probe_accuracy_se", q.get("accuracy_se"))


def metric_label(report: dict) -> str:
    """How the quality column is headed: a classifier's own accuracy, or an encoder's probe accuracy."""
    return "accuracy" if (report.get("quality") or {}).get("metric") == "accuracy" else "probe acc"


def _p50(model: dict, threads: str) -> float | None:
    lat = model["latency"].get(threads)
    return lat["p50_ms"] if lat else None


def runtime_label(m: dict) -> str:
    """The runtime, with the XNNPACK-delegated operator share for ExecuTorch (a portable fallback shows)."""
    share = m.get("xnnpack_delegated_share")
    return str(m.get("runtime", "")) + (f" (XNNPACK {share:.0%} of ops)" if share is not None else "")


def _noisy(model: dict, threads: str) -> bool:
    return bool((model["latency"].get(threads) or {}).get("noisy"))


def paired_speedups(ref: dict, stu: dict, threads: str) -> list[float] | None:
    """``ref`` p50 / ``stu`` p50 per round of the fresh-process schedule, or None without per-process data.

    The bench runs every model once per round, so round k of both models ran seconds apart. A shared host
    that changes speed between processes (seen here: one model at 1.85, 2.85 and 3.6 ms in ten back-to-back
    processes) moves both sides of a round together, which a ratio of two overall medians does not see.
    """
    a = (ref["latency"].get(threads) or {}).get("p50_ms_per_process")
    b = (stu["latency"].get(threads) or {}).get("p50_ms_per_process")
    if not a or not b or len(a) != len(b) or min(b) <= 0:
        return None
    return [x / y for x, y in zip(a, b, strict=True)]


def ratio_spread(rounds: list[float]) -> float:
    """Relative spread of per-round ratios: the interquartile range from 5 rounds on (one round that met a
    burst of host load does not void the other four), the full range below that."""
    mid = statistics.median(rounds)
    if len(rounds) >= 5:
        q1, _, q3 = statistics.quantiles(rounds, n=4, method="inclusive")
        return (q3 - q1) / mid
    return (max(rounds) - min(rounds)) / mid


def ratios(ref: dict | None, stu: dict | None, threads: str) -> dict | None:
    if ref is None or stu is None:
        return None
    acc_r, acc_s = quality_value(ref["quality"]), quality_value(stu["quality"])
    rounds = paired_speedups(ref, stu, threads)
    if rounds:
        # Median of the same-round ratios; noisy when those ratios spread over NOISY_SPREAD (the absolute
        # p50s may drift more: each model's own flag in the tables says so).
        speedup = float(statistics.median(rounds))
        noisy = ratio_spread(rounds) > NOISY_SPREAD
    else:
        # Either side's per-process p50s spread over 10%: the ratio is kept as data but never shown as a headline.
        speedup, noisy = _p50(ref, threads) / _p50(stu, threads), _noisy(ref, threads) or _noisy(stu, threads)
    out = {
        "size_ratio": ref["size_bytes"] / stu["size_bytes"],
        "latency_p50_speedup": speedup,
        "latency_noisy": noisy,
        "quality_retention": (acc_s / acc_r) if acc_r and acc_s is not None else None,
    }
    if rounds:
        out["latency_p50_speedup_rounds"] = [round(r, 4) for r in rounds]
    return out


def speedup_text(r: dict, key: str = "latency_p50_speedup", fmt: str = ".2f", noisy_key: str = "latency_noisy") -> str:
    """``"8.99x faster"``, or a plain refusal when the timings behind the ratio were flagged noisy."""
    if r.get(key) is None:
        return "speed-up not measured"
    if r.get(noisy_key):
        return "speed-up not reliable (noisy timings)"
    return f"{format(r[key], fmt)}x faster"


def build_headline(report: dict, quality: dict) -> dict:
    by = {m["name"]: m for m in report["models"]}
    threads = [str(t) for t in report["settings"]["threads"]]
    main = threads[0]
    teacher, student, teacher8 = by.get("teacher-pytorch"), by.get("student-onnx-int8"), by.get("teacher-onnx-int8")
    head = ratios(teacher, student, main) or {}
    head["vs_teacher_int8"] = ratios(teacher8, student, main)
    if "1" in threads and main != "1":
        r1 = ratios(teacher, student, "1")
        head["latency_p50_speedup_1_thread"] = r1 and r1["latency_p50_speedup"]
        head["latency_noisy_1_thread"] = bool(r1 and r1["latency_noisy"])
    if teacher and student:
        er = energy_ratios(teacher, student)
        if er:
            head["energy_kind"] = ENERGY_KIND
            head["energy_ratio"] = er
    head["settings"] = {"host": report["host"]["cpu"], "host_cores": report["host"]["cores"], "threads": int(main),
                        "batch_size": report["settings"]["batch_size"],
                        "seq_length": report["settings"]["seq_length"]}
    if teacher and student:
        key = "accuracy" if "accuracy" in teacher["quality"] or "accuracy" in student["quality"] else "probe_accuracy"
        head["teacher"] = {"size_bytes": teacher["size_bytes"], "p50_ms": _p50(teacher, main),
                           key: teacher["quality"].get(key)}
        head["student"] = {"size_bytes": student["size_bytes"], "p50_ms": _p50(student, main),
                           key: student["quality"].get(key), "quantization": student["quantization"]}
        a, b = quality.get("student-onnx-int8", {}), quality.get("teacher-pytorch", {})
        if "_correct" in a and "_correct" in b:
            if key == "accuracy":
                # A classifier is scored on its own predictions; the keys keep the report contract's names.
                head["quality_metric"] = "accuracy (the model's own predicted class vs the labels, test split)"
                head["accuracy_retention"] = head.get("quality_retention")
            else:
                head["quality_metric"] = "probe_accuracy (logistic regression on frozen embeddings, test split)"
            head["probe_accuracy_se"] = quality_se(teacher["quality"])
            head["probe_accuracy_difference_se"] = paired_difference_se(a["_correct"], b["_correct"])
            head["probe_test_n"] = teacher["quality"].get("probe_test_n", teacher["quality"].get("test_n"))
    return head


def _fmt(v, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def render_markdown(report: dict) -> str:
    h, s, host = report["headline"], report["settings"], report["host"]
    threads = [str(t) for t in s["threads"]]
    lines = [
        f"# edgedistill bench: {report['recipe']['name']}",
        "",
        f"Host: {host['cpu']}, {host['cores']} cores; torch {host['torch']}, onnxruntime {host['onnxruntime']}. "
        f"Target `{report['target']['name']}` ({report['settings']['target_threads']} threads on device, "
        f"{threads[0]} here). Batch {s['batch_size']}, sequence length {s['seq_length']} ({s['input']}); "
        f"{s['warmup']} warm-up + {s['runs']} timed runs in each of {s['repeats']} fresh processes per model; "
        "p50 = median of the per-process medians, [min-max] of those medians in brackets.",
        "",
    ]
    if host.get("ort_int8_kernels", "default") != "default":
        lines[-1:-1] = [f"onnxruntime int8 kernels here: {host['ort_int8_kernels']}; int8 ONNX latency on this "
                        "host is that of the slower exact kernels, not the device's.", ""]
    head = "| model | runtime | quant | size MB | " + " | ".join(f"p50 ms {t} thr" for t in threads) + \
           f" | peak RSS MB | weights MB | {metric_label(report)} | cos to teacher | batch dependence |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for m in report["models"]:
        q = m["quality"]
        lat = [f"{m['latency'][t]['p50_ms']:.2f} [{m['latency'][t]['p50_spread_ms'][0]:.2f}-"
               f"{m['latency'][t]['p50_spread_ms'][1]:.2f}]" for t in threads]
        acc = quality_value(q)
        acc_s = "-" if acc is None else f"{100 * acc:.2f} ± {100 * quality_se(q):.2f}"
        lines.append(f"| {m['name']} | {runtime_label(m)} | {m['quantization']} | {m['size_bytes'] / 1e6:.2f} | "
                     + " | ".join(lat) + f" | {m['latency'][threads[0]]['peak_rss_mb']:.0f} | "
                     f"{_fmt(_mb(m['latency'][threads[0]].get('weights_bytes')), '.2f')} | {acc_s} | "
                     f"{_fmt(q.get('cosine_to_teacher'), '.4f')} | {_fmt(q.get('batch_dependence'), '.2g')} |")
    noisy = [f"{m['name']} @{t} thr" for m in report["models"] for t in threads if m["latency"][t].get("noisy")]
    if noisy:
        lines += ["", f"**Noisy measurement**: per-process p50s differ by more than 10% for {', '.join(noisy)}; "
                      "re-run on an idle machine before trusting those ratios."]
    lines += [f"- {m['name']}: quality {m['quality_note']}" for m in report["models"] if m.get("quality_note")]
    if any(m["quality"].get("batch_dependence") is not None for m in report["models"]):
        lines += ["", f"Batch dependence: {report['quality'].get('batch_dependence') or BATCH_PROTOCOL} "
                      "(exported models; ~1e-6 means batching does not change a sentence's output)."]
    lines += _grid_table(report)
    if report.get("mode") == "models":
        return "\n".join(lines + _models_headline(h) + _energy_table(report)
                         + ["", f"Energy: {report['energy']['note']}.", ""])
    lines += ["", "## Headline (student bundle vs teacher)", ""]
    lines.append(f"- size: **{_fmt(h.get('size_ratio'), '.2f')}x** smaller than the teacher's fp32 weights")
    speed = speedup_text(h)
    lines.append(f"- latency p50 vs the teacher in PyTorch fp32 ({threads[0]} threads): "
                 + speed.replace(f"{h['latency_p50_speedup']:.2f}x", f"**{h['latency_p50_speedup']:.2f}x**")
                 + (f" ({speedup_text(h, 'latency_p50_speedup_1_thread', noisy_key='latency_noisy_1_thread')} "
                    "at 1 thread)" if h.get("latency_p50_speedup_1_thread") else ""))
    if h.get("quality_retention") is not None:
        lines.append(f"- quality: **{100 * h['quality_retention']:.1f}%** of the teacher's "
                     f"{'accuracy' if 'accuracy_retention' in h else 'probe accuracy'} "
                     f"(n = {h['probe_test_n']} test sentences; one standard error of an accuracy is "
                     f"{100 * h['probe_accuracy_se']:.2f} points, of the paired student-teacher difference "
                     f"{100 * h['probe_accuracy_difference_se']:.2f} points)")
    v = h.get("vs_teacher_int8")
    if v:
        lines.append(f"- against the teacher quantised to int8 ONNX: {v['size_ratio']:.2f}x smaller, "
                     f"{speedup_text(v)}, "
                     + (f"{100 * v['quality_retention']:.1f}% of its probe accuracy"
                        if v.get("quality_retention") is not None else "quality not probed"))
    sq = report["quality"].get("student_pytorch", {})
    if sq:
        lines.append(f"- fp32 student (PyTorch): probe accuracy {_fmt(sq.get('probe_accuracy'), '.4f')}, "
                     f"cosine to teacher {_fmt(sq.get('cosine_to_teacher'), '.4f')}, pairwise-similarity "
                     f"Spearman vs teacher {_fmt(sq.get('spearman_vs_teacher'), '.4f')}")
    par = report["target"].get("parity") or {}
    if par.get("metric") == "classification":
        lines.append(f"- parity gate ({par['scheme']}): top-1 agreement with the fp32 student "
                     f"{par['top1_agreement']:.4f} over {par['sentences']} held-out sentences, logits max abs diff "
                     f"{par['max_abs_diff']:.3g}" + (f", accuracy drop {100 * par['accuracy_drop']:.2f} points"
                                                     if par.get("accuracy_drop") is not None else ""))
    elif par:
        lines.append(f"- parity gate ({par['scheme']}): mean cosine {par['mean_cosine']:.4f}, min "
                     f"{par['min_cosine']:.4f} over {par['sentences']} held-out sentences"
                     + (f", probe accuracy drop {100 * par['probe_drop']:.2f} points"
                        if par.get("probe_drop") is not None else ""))
    d = report.get("distill") or {}
    if d.get("steps"):
        lines.append(f"- distillation: {d['steps']} steps, {d['train_seconds']:.0f} s "
                     f"({d['sentences_per_second']:.0f} sentences/s), best step {d['best_step']}")
    if h.get("energy_ratio"):
        parts = [f"{t} {sig2(v['central'])}x [{sig2(v['lo'])}-{sig2(v['hi'])}]" for t, v in h["energy_ratio"].items()]
        lines.append(f"- modelled energy per inference, teacher / student ({ENERGY_KIND}, not measured): "
                     + ", ".join(parts))
    lines += _energy_table(report)
    lines += _exit_table(report)
    lines += host_energy_lines(report, threads[0])
    lines += ["", f"Energy: {report['energy']['note']}.", ""]
    return "\n".join(lines)


def host_energy_lines(report: dict, threads: str) -> list[str]:
    """RAPL package energy of this host, per model, where the host exposed it (never device energy)."""
    rows = [(m["name"], m["latency"][threads].get("host_energy_mj")) for m in report["models"]
            if threads in m.get("latency", {})]
    rows = [(n, e) for n, e in rows if e is not None]
    if not rows:
        return []
    return ["", f"Host energy per inference, measured-rapl (host), {threads} threads (this machine's CPU packages, "
                "not the device): " + ", ".join(f"{n} {sig2(e)} mJ" for n, e in rows)]


def _energy_table(report: dict) -> list[str]:
    models = [m for m in report["models"] if m.get("energy")]
    if not models:
        return []
    targets = list(models[0]["energy"])
    lines = ["", f"## Modelled on the device ({ENERGY_KIND}; not measured)", "",
             "Energy per inference in mJ, central [lo-hi]; inferences per 1% of the battery (central); "
             "latency in ms, central [lo-hi]. Constants and their sources: `edgedistill targets show NAME`.", ""]
    head = "| model | " + " | ".join(f"{t}: mJ / per 1% / ms" for t in targets) + " |"
    lines += [head, "|" + "---|" * (len(targets) + 1)]
    for m in models:
        cells = []
        for t in targets:
            e = m["energy"][t]
            fit = "" if e["fits_size_budget"] and e["fits_memory_budget"] else " (over budget)"
            cells.append(f"{sig2(e['energy_mj']['central'])} [{sig2(e['energy_mj']['lo'])}-"
                         f"{sig2(e['energy_mj']['hi'])}] / {sig2(e['inferences_per_battery_percent']['central'])}"
                         f" / {sig2(e['t_dev_ms']['central'])} [{sig2(e['t_dev_ms']['lo'])}-"
                         f"{sig2(e['t_dev_ms']['hi'])}]{fit}")
        lines.append(f"| {m['name']} | " + " | ".join(cells) + " |")
    return lines


def _exit_table(report: dict) -> list[str]:
    """Classifier bundles with early exits: accuracy and the exits used, per exit threshold."""
    e = report.get("early_exits")
    if not e:
        return []
    lines = ["", f"## Early exits (blocks {e['layers']})", "", f"{e['note']}.", "",
             "| exit threshold | accuracy | answered by | mean ms / text | speedup |", "|---|---|---|---|---|"]
    for row in e["thresholds"]:
        th = "none (final head)" if row["threshold"] is None else f"{row['threshold']:g}"
        share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["exit_share"].items())
        ms = row.get("mean_ms", row.get("p50_ms"))
        lines.append(f"| {th} | {100 * row['accuracy']:.2f} | {share} | {_fmt(ms, '.2f')} | "
                     f"{_fmt(row.get('speedup'), '.2f')} |")
    return lines


def _mb(b) -> float | None:
    return None if b is None else b / 1e6


def _grid_table(report: dict) -> list[str]:
    """p50 per (batch, seq) cell; only when the recipe asked for more than one cell."""
    grid = (report["settings"].get("grid") or {})
    if len(grid.get("batch_sizes", [])) * len(grid.get("seq_lengths", [])) < 2:
        return []
    cells = [(b, q) for b in grid["batch_sizes"] for q in grid["seq_lengths"]]
    lines = ["", f"## Latency grid ({grid['threads']} threads)", "",
             "p50 ms per inference call (throughput in sequences/s); each cell in its own fresh processes.", "",
             "| model | " + " | ".join(f"batch {b} x seq {q}" for b, q in cells) + " |",
             "|" + "---|" * (len(cells) + 1)]
    for m in report["models"]:
        by = {(c["batch_size"], c["seq_length"]): c for c in m.get("latency_grid") or []}
        lines.append(f"| {m['name']} | " + " | ".join(
            f"{by[c]['p50_ms']:.2f} ({_fmt(by[c].get('throughput_per_s'), '.0f')}/s)" if c in by else "-"
            for c in cells) + " |")
    return lines


def _models_headline(h: dict) -> list[str]:
    vs = h.get("vs_teacher")
    if not vs:
        return ["", h.get("note", "no teacher given: no ratios")]
    t = h["settings"]["threads"]
    lines = ["", "## Against the teacher", ""]
    for name, r in vs.items():
        lines.append(f"- {name}: {r['size_ratio']:.2f}x smaller, {speedup_text(r)} "
                     f"(p50, {t} threads)" + (f", {100 * r['quality_retention']:.1f}% of its probe accuracy"
                                               if r.get("quality_retention") is not None else ""))
    return lines
