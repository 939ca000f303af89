"""The plots of the HTML report: latency boxes, the size-latency-quality Pareto scatter, modelled energy per
target (with its table) and the distillation curves, each an inline SVG in a <figure> with its caption."""

from __future__ import annotations

from html import escape

from .html_fmt import (MEASURED, OTHER_ROLE, ROLE_STYLE, _badge, _e, _energy_kinds, _fig, _get, _lat, _mb, _modelled,
                       _na, _pct, _rng, _role, _spread, _threads)
from .results import quality_value
from .svg import PALETTE, box_rows, grouped_bars, lines, scatter


def _role_legend(models: list[dict]) -> list[tuple[str, str, str]]:
    roles = dict.fromkeys(m.get("role") or "other" for m in models)
    return [(role, *ROLE_STYLE.get(role, OTHER_ROLE)) for role in roles]


def _latency_plot(r: dict) -> str:
    title = "Latency distribution per model"
    threads = _threads(r)
    t = threads[0] if threads else None
    rows = []
    for m in r.get("models") or []:
        lat = _lat(m, t)
        if lat.get("p50_ms") is None:
            continue
        samples = [x for x in lat.get("samples_ms") or [] if isinstance(x, (int, float)) and x > 0]
        lo, hi = _spread(lat)
        rows.append({"label": str(m.get("name")), "colour": _role(m)[0], "samples": samples or None,
                     "p50": lat["p50_ms"], "spread": (lo, hi)})
    if not rows:
        return f"<h3>{title}</h3>" + _na("Latency per model")
    missing = sum(1 for x in rows if not x["samples"])
    svg = box_rows(rows, f"{title} ({t} threads)", "measured on this host, batch "
                   f"{_e(_get(r, 'settings', 'batch_size'))}, sequence length {_e(_get(r, 'settings', 'seq_length'))}",
                   "latency per inference (ms, log scale)", _role_legend(r.get("models") or []))
    cap = "The number is the reported p50 (median of the per-process medians)."
    if missing < len(rows):
        cap = ("Box: quartiles of every timed run pooled over processes, bar = median, whiskers to 1.5×IQR, "
               "dots = single runs. " + cap)
    if missing:
        cap += (f" Per-run samples are not available for {missing} of {len(rows)} models: those show the p50 (◆) "
                "with the min–max of the per-process medians as a range bar.")
    return _fig(svg, escape(cap))


def _pareto_points(entries: list[tuple[str, dict, str | None, str, str]]) -> list[dict]:
    """entries: (label, model, threads, colour, shape). Marks points no other point beats on all three axes."""
    pts = []
    for label, m, t, colour, shape in entries:
        size, p50 = _mb(m.get("size_bytes")), _lat(m, t).get("p50_ms")
        if not size or not p50:
            continue
        q = m.get("quality") or {}
        acc = quality_value(q)
        pts.append({"x": size, "y": p50, "acc": acc, "label": label, "colour": colour, "shape": shape,
                    "sublabel": "probe acc " + (_pct(acc) if acc is not None else "n/a")})
    for p in pts:
        # an unprobed point claims no accuracy, so size and speed alone can beat it; an unprobed
        # point cannot beat a probed one, since it is not known to be at least as accurate
        p["ring"] = not any(o["x"] < p["x"] and o["y"] < p["y"]
                            and (p["acc"] is None or (o["acc"] is not None and o["acc"] >= p["acc"]))
                            for o in pts if o is not p)
    return pts


def _pareto_plot(pts: list[dict], legend, subtitle: str) -> str:
    title = "Size – latency – quality trade-off (Pareto)"
    if not pts:
        return f"<h3>{title}</h3>" + _na("Size and latency per model")
    legend = legend + [("Pareto-optimal: no other model is smaller, faster and at least as accurate", "#111",
                        "ring")]
    svg = scatter(pts, title, subtitle, "model size (MB, log scale)", "p50 latency (ms, log scale)", legend)
    return _fig(svg, "Lower left is better. Sizes and latencies " + MEASURED +
                "; the ring marks Pareto-optimal models over size, p50 latency and probe accuracy.")


def _energy_series(r: dict) -> tuple[list[str], list[dict]]:
    models = [m for m in r.get("models") or [] if m.get("energy")]
    seen: dict[str, None] = dict.fromkeys(r.get("targets") or [])
    for m in models:
        seen.update(dict.fromkeys(m["energy"]))
    targets = [t for t in seen if any(t in m["energy"] for m in models)]
    return targets, models


def _energy_plot(r: dict) -> str:
    title = "Energy per inference by target"
    targets, models = _energy_series(r)
    if not targets:
        return f"<h3>{title}</h3>" + _na("Modelled energy per target")
    label = _modelled(", ".join(_energy_kinds(r)) or None)
    series = [(str(m.get("name")), PALETTE[i % len(PALETTE)]) for i, m in enumerate(models)]
    values = {(t, str(m.get("name"))): (m["energy"].get(t) or {}).get("energy_mj") or {}
              for m in models for t in targets if t in m["energy"]}
    svg = grouped_bars(targets, series, values, f"{title} — {label}",
                       f"{label}: not measured; bar = central estimate, error bar = lo–hi range",
                       f"energy per inference (mJ, {label.split(' ')[0]})")
    return _fig(svg, f"{_badge(', '.join(_energy_kinds(r)) or None)} Values come from the target's energy model "
                     "(device time × power constants), not from a meter.") + _energy_table(targets, models, label)


def _energy_table(targets: list[str], models: list[dict], label: str) -> str:
    # One row per (target, model): five targets side by side overflow a laptop screen.
    rows = []
    for t in targets:
        for i, m in enumerate(models):
            e = m["energy"].get(t)
            if not e:
                continue
            over = [k for k in ("memory", "size") if e.get(f"fits_{k}_budget") is False]
            budget = "".join(f"<span class='over'>over the {k} budget</span> " for k in over) or "fits"
            first = f"<td class='m' rowspan='{len(models)}'>{escape(t)}</td>" if i == 0 else ""
            rows.append(f"<tr>{first}<td class='m'>{_e(m.get('name'))}</td>"
                        f"<td class='n'>{escape(_rng(e.get('energy_mj'), 'mJ'))}</td>"
                        f"<td class='n'>{escape(_rng(e.get('inferences_per_battery_percent')))}</td>"
                        f"<td class='n'>{escape(_rng(e.get('t_dev_ms'), 'ms'))}</td><td>{budget}</td></tr>")
    return (f"<table><thead><tr><th>target</th><th>model</th><th>energy per inference</th>"
            f"<th>inferences per 1% battery</th><th>device time</th><th>budgets</th></tr>"
            f"<tr><th colspan='6' class='sub'>every figure {escape(label)}: central (lo–hi)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


_EVAL_PLOTS = {
    "val_cosine": ("Validation cosine to teacher", "mean cosine to teacher",
                   "Held-out embedding cosine between student and teacher during training."),
    "val_accuracy": ("Validation accuracy", "accuracy", "Held-out classification accuracy of the student during "
                     "training (the kept checkpoint is the best one)."),
}


def _distill_plots(r: dict) -> str:
    d = r.get("distill") or {}
    losses = [x for x in d.get("losses") or [] if isinstance(x, dict) and x.get("step") is not None]
    # Embedding runs evaluate the cosine to the teacher, classification runs the validation accuracy.
    metric = "val_accuracy" if any(isinstance(x, dict) and "val_accuracy" in x for x in d.get("evals") or []) \
        else "val_cosine"
    evals = [x for x in d.get("evals") or [] if isinstance(x, dict) and x.get("step") is not None
             and isinstance(x.get(metric), (int, float))]
    sub = (f"{d['steps']} steps" if d.get("steps") else "distillation") + \
          (f", {d['train_seconds']:.0f} s of training" if d.get("train_seconds") else "")
    parts = []
    if losses:
        terms = ["loss"] + [k for k in losses[0] if k not in ("step", "lr", "loss", "epoch")
                            and isinstance(losses[0][k], (int, float))]
        series = [("total loss" if k == "loss" else k, PALETTE[i % len(PALETTE)],
                   [(x["step"], x[k]) for x in losses if isinstance(x.get(k), (int, float))])
                  for i, k in enumerate(terms)]
        series = [s for s in series if s[2]]
        log = all(y > 0 for _, _, pts in series for _, y in pts)
        parts.append(_fig(lines(series, "Distillation loss curves", sub, "training step",
                                "loss (log scale)" if log else "loss", log_y=log), "Total loss and each loss term."))
    else:
        parts.append("<div><h3>Distillation loss curves</h3>" + _na("Training losses") + "</div>")
    title, ylabel, caption = _EVAL_PLOTS[metric]
    if evals:
        svg = lines([(metric, PALETTE[2], [(x["step"], x[metric]) for x in evals])], title, sub, "training step",
                    ylabel)
        parts.append(_fig(svg, caption))
    else:
        parts.append(f"<div><h3>{escape(title)}</h3>" + _na("Validation evaluations") + "</div>")
    return f'<div class="pair">{"".join(parts)}</div>'
