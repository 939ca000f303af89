"""Bench reports as one self-contained HTML page: headline, tables and inline SVG plots.

Nothing is fetched when the page is opened (no external CSS, JS, fonts or images), so the file can be
mailed or archived as is. Every optional part of a report may be missing (older schema versions, runs
without distillation or energy modelling); the page then says "not available" for that part instead of
failing. Modelled figures (energy) are always labelled as such, with their lo-hi range, and kept visually
apart from what was measured on the benchmark host.
"""

from __future__ import annotations

from html import escape

from ..measure.energy import sig2
from .html_fmt import (MEASURED, _badge, _cos, _e, _faster, _fig, _get, _lat, _mb, _na, _pct, _role, _sci, _spread,
                       _threads, _x)
from .html_plots import _distill_plots, _energy_plot, _latency_plot, _pareto_plot, _pareto_points, _role_legend
from .results import metric_label, quality_se, quality_value, runtime_label
from .svg import PALETTE, lines, num

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#222;
 background:#f6f7f9;margin:0}
main{max-width:1140px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:34px 0 10px;border-bottom:1px solid #ddd;
 padding-bottom:4px}h3{font-size:16px;margin:22px 0 8px}
.meta{color:#555;font-size:14px;line-height:1.5;margin:4px 0}
.note{background:#fff7e0;border:1px solid #f0d48a;padding:8px 12px;border-radius:6px;font-size:14px}
.na{color:#777;font-style:italic;background:#fff;border:1px dashed #ccc;padding:10px 14px;border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 14px}
.card .k{font-size:13px;color:#555}.card .v{font-size:22px;font-weight:650;margin:4px 0;white-space:nowrap}
.card .d{font-size:12.5px;color:#555;line-height:1.45}
.card.modelled{border-color:#c9b3e6;background:#fbf8ff}
.badge{display:inline-block;font-size:11.5px;padding:1px 7px;border-radius:10px;margin:3px 0;white-space:nowrap}
.over{color:#b3261e;font-size:12px}
.badge.measured{background:#e3f3ea;color:#17643a}.badge.modelled{background:#ece2fa;color:#55308f}
table{border-collapse:collapse;background:#fff;font-size:13.5px;margin:8px 0;width:100%}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.m{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}.sub{color:#777;font-size:12px}
figure{margin:14px 0;background:#fff;border:1px solid #ddd;border-radius:8px;padding:6px;overflow-x:auto}
figure svg{display:block;max-width:100%;height:auto}figcaption{font-size:12.5px;color:#555;margin:4px 8px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}.pair figure{margin:0}
"""


def _header(r: dict, name: str, tag: str) -> str:
    host, s = r.get("host") or {}, r.get("settings") or {}
    threads = _threads(r)
    out = [f"<{tag}>edgedistill bench: {escape(name)}</{tag}>"]
    if r.get("_note"):
        out.append(f'<p class="note">{escape(str(r["_note"]))}</p>')
    out.append(f'<p class="meta">Created {_e(r.get("created"))}. Host: {_e(host.get("cpu"))}, {_e(host.get("cores"))} '
               f'cores; torch {_e(host.get("torch"))}, onnxruntime {_e(host.get("onnxruntime"))}.<br>'
               f'Target <b>{_e(_get(r, "target", "name"))}</b> ({_e(s.get("target_threads"))} threads on device; '
               f'threads here: {escape(", ".join(threads) or "–")}). Batch {_e(s.get("batch_size"))}, sequence '
               f'length {_e(s.get("seq_length"))}{_grid_text(s)} ({_e(s.get("input"))}); '
               f'{_e(s.get("warmup"))} warm-up + '
               f'{_e(s.get("runs"))} timed runs in each of {_e(s.get("repeats"))} fresh processes per model.</p>')
    return "\n".join(out)


def _grid_text(s: dict) -> str:
    g = s.get("grid") or {}
    b, q = g.get("batch_sizes") or [], g.get("seq_lengths") or []
    if len(b) * len(q) < 2:
        return ""
    return (f" (the headline cell; the grid also covers batch {escape(', '.join(map(str, b)))} × sequence length "
            f"{escape(', '.join(map(str, q)))})")


def _card(key: str, value: str, detail: str, badge: str, cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div>'
            f'<div class="d">{detail}</div>{badge}</div>')


def _models_cards(r: dict) -> list[str]:
    """``--model`` mode: one card per model against the teacher, or a note that there is no teacher."""
    h, t0 = r.get("headline") or {}, (_threads(r) or ["?"])[0]
    vs = {n: v for n, v in (h.get("vs_teacher") or {}).items() if isinstance(v, dict)}
    if not vs:
        return [_card("Ratios", "–", escape(str(h.get("note") or "no teacher given")), "")]
    return [_card(f"{n} vs the teacher ({t0} threads)", _faster(v.get("latency_p50_speedup"), v.get("latency_noisy")),
                  f"{_x(v.get('size_ratio'))} smaller; " + (f"{_pct(v['quality_retention'])} of its probe accuracy"
                                                           if v.get("quality_retention") is not None
                                                           else "quality not probed"), MEASURED)
            for n, v in list(vs.items())[:6]]


def _headline(r: dict) -> str:
    h, t0 = r.get("headline") or {}, (_threads(r) or ["?"])[0]
    if r.get("mode") == "models":
        return f'<div class="cards">{"".join(_models_cards(r) + _energy_card(r))}</div>{_energy_note(r)}'

    te, st = h.get("teacher") or {}, h.get("student") or {}
    one = h.get("latency_p50_speedup_1_thread")
    cards = [
        _card("Size (teacher fp32 ÷ student bundle)", f"{_x(h.get('size_ratio'))} smaller",
              f"{num(_mb(te.get('size_bytes')))} MB → {num(_mb(st.get('size_bytes')))} MB", MEASURED),
        _card(f"Latency p50 speedup ({t0} threads)", _faster(h.get("latency_p50_speedup"), h.get("latency_noisy")),
              f"{num(te.get('p50_ms'))} ms → {num(st.get('p50_ms'))} ms"
              + (f"; {_faster(one, h.get('latency_noisy_1_thread'))} at 1 thread" if one else ""), MEASURED),
        _card(f"Quality retention ({'accuracy' if metric_label(r) == 'accuracy' else 'probe accuracy'})",
              "–" if h.get("quality_retention") is None else f"{100 * h['quality_retention']:.1f}%",
              f"{_pct(quality_value(te))} → {_pct(quality_value(st))}"
              + (f"; paired difference SE {100 * h['probe_accuracy_difference_se']:.2f} pts, "
                 f"n = {_e(h.get('probe_test_n'))}" if h.get("probe_accuracy_difference_se") is not None else ""),
              MEASURED),
    ]
    v = h.get("vs_teacher_int8")
    cards.append(_card("Against the teacher in int8 ONNX",
                       "–" if not v else _faster(v.get("latency_p50_speedup"), v.get("latency_noisy")),
                       "not benchmarked in this run" if not v else
                       f"{_x(v.get('size_ratio'))} smaller, {_pct(v.get('quality_retention'))} of its probe accuracy",
                       MEASURED if v else ""))
    cards += _energy_card(r)
    return f'<div class="cards">{"".join(cards)}</div>{_energy_note(r)}'


def _energy_card(r: dict) -> list[str]:
    h = r.get("headline") or {}
    ratios = {t: x for t, x in (h.get("energy_ratio") or {}).items() if isinstance(x, dict)}
    if not ratios:
        return []
    main = _get(r, "target", "name")
    main = main if main in ratios else next(iter(ratios))
    detail = "central (lo–hi):<br>" + "<br>".join(
        f"{escape(t)}: {escape(sig2(x.get('central')))}× ({sig2(x.get('lo'))}–{sig2(x.get('hi'))})"
        for t, x in ratios.items())
    who = _get(h, "student", "name") or "student"
    return [_card(f"Energy ratio, teacher ÷ {who} ({main})", f"{sig2(ratios[main].get('central'))}×", detail,
                  _badge(h.get("energy_kind")), "modelled")]


def _energy_note(r: dict) -> str:
    note = _get(r, "energy", "note")
    return f'<p class="meta">Energy: {escape(str(note))}.</p>' if note else ""


def _models_table(r: dict) -> str:
    models, threads = r.get("models") or [], _threads(r)
    if not models:
        return _na("Per-model results")
    head = "".join(f"<th>p50 ms @ {escape(t)} thr<br><span class='sub'>[min–max of process medians]</span></th>"
                   for t in threads)
    # Reports before schema 2 carry no weights figure; leave the column out rather than fill it with dashes.
    weights = any(_lat(m, t).get("weights_bytes") for m in models for t in threads)
    weights_head = "<th>weights MB<br><span class='sub'>as the runtime holds them</span></th>" if weights else ""
    rows = []
    for m in models:
        q = m.get("quality") or {}
        lat = "".join(f'<td class="n">{num(_lat(m, t).get("p50_ms"))} <span class="sub">'
                      f'[{"–".join(num(x) for x in _spread(_lat(m, t)))}]</span></td>'
                      for t in threads)
        rows.append(f"<tr><td class='m'>{_e(m.get('name'))}</td><td>{_e(m.get('role'))}</td>"
                    f"<td>{_e(runtime_label(m))}</td>"
                    f"<td class='m'>{_e(m.get('quantization'))}</td><td class='n'>{num(_mb(m.get('size_bytes')))}</td>"
                    f"{lat}"
                    f"<td class='n'>{num(_lat(m, threads[0] if threads else None).get('peak_rss_mb'))}</td>"
                    + (f"<td class='n'>{num(_mb(_lat(m, threads[0] if threads else None).get('weights_bytes')))}</td>"
                       if weights else "") +
                    f"<td class='n'>{_pct(quality_value(q), quality_se(q))}</td>"
                    f"<td class='n'>{_cos(q.get('cosine_to_teacher'))}</td>"
                    f"<td class='n'>{_sci(q.get('batch_dependence'))}"
                    "</td></tr>")
    return (f"<h3>Models {MEASURED}</h3><table><thead><tr><th>model</th><th>role</th><th>runtime</th><th>quant</th>"
            f"<th>size MB</th>{head}<th>peak RSS MB</th>{weights_head}<th>{escape(metric_label(r))} ± SE</th>"
            "<th>cos to teacher</th>"
            "<th>batch dependence<br><span class='sub'>max abs diff alone vs in a batch of 16</span></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{_notes(models)}")


def _notes(models: list[dict]) -> str:
    items = [f"<li>{_e(m.get('name'))}: quality {_e(m['quality_note'])}</li>" for m in models if m.get("quality_note")]
    arena = next((_lat(m, t).get("arena_note") for m in models for t in (m.get("latency") or {})
                  if _lat(m, t).get("arena_note")), None)
    if arena:
        items.append("<li>Runtime memory arenas: not exposed (e.g. " + escape(str(arena)) + "); weights MB is what "
                     "the runtime reports as its weights: torch parameters + buffers, ONNX graph initializers.</li>")
    return f'<ul class="meta">{"".join(items)}</ul>' if items else ""


def _grid(r: dict) -> str:
    """The latency grid: a table of every (batch, seq) cell and a chart of p50 against the varying axis."""
    g = _get(r, "settings", "grid") or {}
    batches, seqs = g.get("batch_sizes") or [], g.get("seq_lengths") or []
    if len(batches) * len(seqs) < 2:
        return ""
    cells = [(b, q) for b in batches for q in seqs]
    models = r.get("models") or []
    by = {str(m.get("name")): {(c.get("batch_size"), c.get("seq_length")): c for c in m.get("latency_grid") or []}
          for m in models}
    head = "".join(f"<th>batch {b} × seq {q}</th>" for b, q in cells)
    rows = "".join(
        f"<tr><td class='m'>{_e(n)}</td>" + "".join(
            f"<td class='n'>{num((cs.get(c) or {}).get('p50_ms'))} <span class='sub'>"
            f"{num((cs.get(c) or {}).get('throughput_per_s'))}/s</span></td>" for c in cells) + "</tr>"
        for n, cs in by.items())
    table = (f"<table><thead><tr><th>model</th>{head}</tr><tr><th colspan='{len(cells) + 1}' class='sub'>p50 ms per "
             f"call, sequences per second; {_e(g.get('threads'))} threads, each cell in its own fresh processes"
             f"</th></tr></thead><tbody>{rows}</tbody></table>")
    x_seq = len(seqs) > 1
    series = []
    for i, (n, cs) in enumerate(by.items()):
        for j, b in enumerate(batches if x_seq else [None]):
            pts = [((q if x_seq else bb), cs[(bb, q)]["p50_ms"]) for bb in ([b] if x_seq else batches)
                   for q in (seqs if x_seq else seqs[:1]) if (bb, q) in cs and cs[(bb, q)].get("p50_ms")]
            if pts:
                label = n + (f", batch {b}" if x_seq and len(batches) > 1 else "")
                series.append((label, PALETTE[(i * max(1, len(batches)) + j) % len(PALETTE)], sorted(pts)))
    chart = ""
    if series:
        svg = lines(series, f"Latency over the grid ({_e(g.get('threads'))} threads)",
                    "measured on this host" + ("" if x_seq else f", sequence length {seqs[0]}"),
                    "sequence length (tokens)" if x_seq else "batch size", "p50 latency (ms, log scale)",
                    log_y=True, width=1000, height=320)
        chart = _fig(svg, "Each point is the p50 of its own fresh processes.")
    return f"<h3>Latency grid {MEASURED}</h3>{table}{chart}"


def _run_section(r: dict, name: str, tag: str) -> str:
    threads = _threads(r)
    t = threads[0] if threads else None
    pts = _pareto_points([(str(m.get("name")), m, t, *_role(m)) for m in r.get("models") or []])
    return "\n".join([
        _header(r, name, tag), _headline(r), _models_table(r),
        "<h3>Latency</h3>", _latency_plot(r), _grid(r),
        "<h3>Trade-off</h3>", _pareto_plot(pts, _role_legend(r.get("models") or []),
                                           f"p50 at {t} threads, measured on this host; label: model, probe accuracy"),
        "<h3>Energy</h3>", _energy_plot(r),
    ] + ([] if r.get("mode") == "models" else ["<h3>Distillation</h3>", _distill_plots(r)]))


def _run_names(reports: list[dict]) -> list[str]:
    names: list[str] = []
    for i, r in enumerate(reports):
        n = str(_get(r, "recipe", "name") or f"run {i + 1}")
        names.append(n if n not in names else f"{n} #{i + 1}")
    return names


def _comparison(reports: list[dict], names: list[str]) -> str:
    rows, entries = [], []
    for i, (r, n) in enumerate(zip(reports, names, strict=False)):
        threads = _threads(r)
        t = threads[0] if threads else None
        for m in r.get("models") or []:
            lat, q = _lat(m, t), m.get("quality") or {}
            spread = _spread(lat)
            rows.append(f"<tr><td class='m'>{escape(n)}</td><td class='m'>{_e(r.get('created'))}</td>"
                        f"<td>{_e(_get(r, 'host', 'cpu'))}</td><td class='m'>{_e(m.get('name'))}</td>"
                        f"<td>{_e(m.get('role'))}</td><td class='m'>{_e(m.get('quantization'))}</td>"
                        f"<td class='n'>{num(_mb(m.get('size_bytes')))}</td><td class='n'>{num(lat.get('p50_ms'))} "
                        f"<span class='sub'>[{num(spread[0])}–{num(spread[1])}] @ {_e(t)} thr</span></td>"
                        f"<td class='n'>{_pct(quality_value(q), quality_se(q))}</td></tr>")
            entries.append((f"{n}/{m.get('name')}", m, t, PALETTE[i % len(PALETTE)], _role(m)[1]))
    legend = [(n, PALETTE[i % len(PALETTE)], "circle") for i, n in enumerate(names)]
    legend += [(f"{role} (shape)", "#888", shape) for role, shape in
               dict.fromkeys((m.get("role") or "other", _role(m)[1]) for _, m, *_ in entries)]
    table = ("<table><thead><tr><th>run</th><th>created</th><th>host</th><th>model</th><th>role</th><th>quant</th>"
             "<th>size MB</th><th>p50 ms [min–max]</th><th>{escape(metric_label(r))} ± SE</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    return (f"<h2>Comparison {MEASURED}</h2>{table}" + _pareto_plot(
        _pareto_points(entries), legend, "all runs; p50 at each run's first thread count; colour = run, shape = role"))


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body><main>\n{body}\n</main></body></html>\n")


def render_html(reports: list[dict]) -> str:
    """One report -> its page; several reports (from different runs) -> one comparison page."""
    if not reports:
        raise ValueError("render_html needs at least one report")
    names = _run_names(reports)
    if len(reports) == 1:
        title, body = f"edgedistill bench: {names[0]}", _run_section(reports[0], names[0], "h1")
    else:
        title = "edgedistill bench comparison: " + " vs ".join(names)
        body = "\n".join([f"<h1>{escape(title)}</h1>", _comparison(reports, names)]
                         + [_run_section(r, f"run {i + 1}: {n}", "h2")
                            for i, (r, n) in enumerate(zip(reports, names, strict=False))])
    return _page(title, body)


def render_training_html(record: dict, name: str) -> str:
    """A distill.json record (classification runs, which have no bench report) -> a page with its
    training-loss and validation curves."""
    title = f"edgedistill distill: {name}"
    m = record.get("metrics") or {}
    facts = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in m.items() if isinstance(v, float))
    body = (f"<h1>{escape(title)}</h1><p>{escape(str(record.get('strategy', '')))}; {escape(facts)}</p>"
            + _distill_plots({"distill": record}))
    return _page(title, body)
