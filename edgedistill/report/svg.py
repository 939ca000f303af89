"""Hand-written SVG charts for the HTML bench report.

No plotting dependency: each chart is a small, well-formed XML fragment that a browser inlines, so the
report stays one self-contained file. There is no layout engine, so text widths are estimated from the
font size; the estimate errs wide so labels keep clear of each other.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f",
           "#ff9da7", "#bab0ac"]
FONT = 12
INK, MUTED, GRID = "#222", "#666", "#e4e4e4"


_NARROW, _WIDE = set("ijlrtf.,:;!|/()[] -'1"), set("mwMW@%")


def text_width(s: str, size: float = FONT, bold: bool = False) -> float:
    """Width in a DejaVu-like sans face, slightly generous so estimated boxes do not collide."""
    em = sum(0.36 if ch in _NARROW else 0.95 if ch in _WIDE else 0.72 if ch.isupper() else 0.63 for ch in s)
    return em * size * (1.15 if bold else 1.0)


def num(v: float | None, missing: str = "–") -> str:
    """About three significant figures, never scientific notation for the magnitudes a report holds."""
    if v is None or not math.isfinite(v):
        return missing
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def tick_label(v: float, step: float | None = None) -> str:
    if step:
        return f"{v:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    return f"{v:g}"


def domain(values, log: bool = False, pad: float = 0.08, zero: bool = False) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if log:
        if hi / lo < 2:  # a log axis over less than a factor of two shows no tick worth reading
            mid = math.sqrt(hi * lo)
            lo, hi = mid / 1.5, mid * 1.5
        f = (hi / lo) ** pad
        return lo / f, hi * f
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = (hi - lo) or abs(hi) or 1.0
    return (lo if zero and lo == 0 else lo - pad * span), hi + pad * span


class Scale:
    """Maps a data interval onto a pixel interval, linearly or in log10."""

    def __init__(self, lo: float, hi: float, start: float, end: float, log: bool = False):
        self.lo, self.hi, self.start, self.end, self.log = lo, hi, start, end, log

    def _f(self, v: float) -> float:
        return math.log10(max(v, 1e-300)) if self.log else v

    def __call__(self, v: float) -> float:
        a, b = self._f(self.lo), self._f(self.hi)
        if b == a:
            return (self.start + self.end) / 2
        return self.start + (self._f(v) - a) / (b - a) * (self.end - self.start)

    def ticks(self) -> tuple[list[float], float | None]:
        """Tick values and, for a linear axis, the step (it fixes how many decimals the labels need)."""
        lo, hi = self.lo, self.hi
        if self.log:
            d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            for mults in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
                if mults == (1,) and d1 - d0 <= 4:
                    continue
                out = [m * 10.0 ** d for d in range(d0, d1 + 1) for m in mults if lo <= m * 10.0 ** d <= hi]
                if len(out) >= 3:
                    return out, None
            return out, None
        raw = (hi - lo) / 5 or 1.0
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        return [k * step for k in range(k0, k1 + 1)], step


def _attrs(**kw) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"' for k, v in kw.items() if v is not None)


class Chart:
    """One SVG canvas: title, optional subtitle and legend on top, a plot area, and drawing helpers."""

    def __init__(self, width: int, height: int, title: str, subtitle: str | None = None,
                 legend: list[tuple[str, str, str]] | None = None, left: int = 70, right: int = 24,
                 bottom: int = 52):
        self.w, self.title, self.subtitle, self.parts = width, title, subtitle, []
        self.legend_rows = self._layout_legend(legend or [], width - 24)
        top = 34 + (18 if subtitle else 0) + 20 * len(self.legend_rows) + 14
        self.h = height + top
        self.x0, self.x1, self.y0, self.y1 = left, width - right, top, self.h - bottom
        y = 34 + (18 if subtitle else 0) + 8
        for row in self.legend_rows:
            for x, label, colour, shape in row:
                ring = shape == "ring"
                self.marker(shape, 20 + x, y + 6, 5, colour, stroke=colour if ring else "#fff", width=2 if ring else 1)
                self.text(32 + x, y + 10, label, FONT)
            y += 20

    @staticmethod
    def _layout_legend(items, max_w):
        rows, row, x = [], [], 0.0
        for label, colour, shape in items:
            w = 22 + text_width(label) + 18
            if row and x + w > max_w:
                rows.append(row)
                row, x = [], 0.0
            row.append((x, label, colour, shape))
            x += w
        return rows + ([row] if row else [])

    def add(self, s: str) -> None:
        self.parts.append(s)

    def line(self, x1, y1, x2, y2, stroke=INK, width=1.0, dash=None, opacity=None) -> None:
        a = _attrs(x1=f"{x1:.1f}", y1=f"{y1:.1f}", x2=f"{x2:.1f}", y2=f"{y2:.1f}", stroke=stroke,
                   stroke_width=width, stroke_dasharray=dash, opacity=opacity)
        self.add(f"<line{a}/>")

    def rect(self, x, y, w, h, fill, stroke=None, opacity=None, rx=None) -> None:
        a = _attrs(x=f"{x:.1f}", y=f"{y:.1f}", width=f"{max(w, 0):.1f}", height=f"{max(h, 0):.1f}", fill=fill,
                   stroke=stroke, fill_opacity=opacity, rx=rx)
        self.add(f"<rect{a}/>")

    def text(self, x, y, s: str, size=FONT, anchor="start", fill=INK, weight=None, rotate=False,
             baseline=None) -> None:
        tr = f"rotate(-90 {x:.1f} {y:.1f})" if rotate else None
        a = _attrs(x=f"{x:.1f}", y=f"{y:.1f}", font_size=size, text_anchor=anchor, fill=fill, font_weight=weight,
                   transform=tr, dominant_baseline=baseline)
        self.add(f"<text{a}>{escape(s)}</text>")

    def path(self, points, stroke, width=2.0, dash=None) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        a = _attrs(d=d, fill="none", stroke=stroke, stroke_width=width, stroke_dasharray=dash, stroke_linejoin="round")
        self.add(f"<path{a}/>")

    def marker(self, shape: str, x, y, r, fill, stroke="#fff", width=1.0, opacity=None) -> None:
        common = _attrs(fill=fill, stroke=stroke, stroke_width=width, fill_opacity=opacity)
        if shape == "square":
            self.add(f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}"{common}/>')
        elif shape == "diamond":
            k = r * 1.3
            self.add(f'<path d="M{x:.1f},{y - k:.1f} L{x + k:.1f},{y:.1f} L{x:.1f},{y + k:.1f} L{x - k:.1f},{y:.1f} Z"'
                     f"{common}/>")
        elif shape == "ring":
            ring = _attrs(fill="none", stroke=fill, stroke_width=width)
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"{ring}/>')
        elif shape == "bar":
            self.add(f'<rect x="{x - r:.1f}" y="{y - r / 2.5:.1f}" width="{2 * r:.1f}" height="{r / 1.25:.1f}"'
                     f"{common}/>")
        else:
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"{common}/>')

    def x_axis(self, sx: Scale, label: str, fmt=None) -> None:
        ticks, step = sx.ticks()
        for v in ticks:
            x = sx(v)
            self.line(x, self.y0, x, self.y1, GRID)
            self.text(x, self.y1 + 16, fmt(v) if fmt else tick_label(v, step), 11, "middle", MUTED)
        self.line(self.x0, self.y1, self.x1, self.y1, "#999")
        self.text((self.x0 + self.x1) / 2, self.y1 + 38, label, FONT, "middle")

    def y_axis(self, sy: Scale, label: str, fmt=None) -> None:
        ticks, step = sy.ticks()
        for v in ticks:
            y = sy(v)
            self.line(self.x0, y, self.x1, y, GRID)
            self.text(self.x0 - 6, y + 4, fmt(v) if fmt else tick_label(v, step), 11, "end", MUTED)
        self.line(self.x0, self.y0, self.x0, self.y1, "#999")
        self.text(16, (self.y0 + self.y1) / 2, label, FONT, "middle", rotate=True)

    def render(self) -> str:
        head = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {self.w} {self.h:.0f}" '
                 f'width="{self.w}" height="{self.h:.0f}" role="img" aria-label="{escape(self.title)}">'),
                f"<title>{escape(self.title)}</title>",
                f'<rect width="{self.w}" height="{self.h:.0f}" fill="#fff"/>',
                f'<text x="12" y="22" font-size="15" font-weight="600" fill="{INK}">{escape(self.title)}</text>']
        if self.subtitle:
            head.append(f'<text x="12" y="42" font-size="12" fill="{MUTED}">{escape(self.subtitle)}</text>')
        return "\n".join(head + self.parts + ["</svg>"])


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    s = sorted(xs)

    def q(p: float) -> float:
        i = p * (len(s) - 1)
        lo = math.floor(i)
        return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)

    return q(0.25), q(0.5), q(0.75)


def box_rows(rows: list[dict], title: str, subtitle: str, xlabel: str, legend, log: bool = True,
             width: int = 1100) -> str:
    """Horizontal box-and-strip rows. Row keys: label, colour, samples (or None), p50, spread (lo, hi).

    A row without samples is drawn as its p50 with the spread as a range bar, so old reports still plot.
    """
    band = 46
    left = int(max(text_width(r["label"]) for r in rows)) + 24
    c = Chart(width, band * len(rows) + 60, title, subtitle, legend, left=left, right=110)
    vals = [v for r in rows for v in (r["samples"] or [r["p50"], *r["spread"]]) if v is not None]
    sx = Scale(*domain(vals, log), c.x0, c.x1, log)
    c.x_axis(sx, xlabel)
    for i, r in enumerate(rows):
        yc = c.y0 + band * (i + 0.5)
        c.text(c.x0 - 10, yc + 4, r["label"], FONT, "end")
        col, s = r["colour"], r["samples"]
        if s:
            q1, med, q3 = _quartiles(s)
            lo_w = min(v for v in s if v >= q1 - 1.5 * (q3 - q1))
            hi_w = max(v for v in s if v <= q3 + 1.5 * (q3 - q1))
            for k, v in enumerate(s):  # golden-ratio jitter: deterministic, evenly spread
                c.marker("circle", sx(v), yc + ((k * 0.618034) % 1 - 0.5) * band * 0.7, 1.8, col, stroke="none",
                         opacity=0.35)
            c.line(sx(lo_w), yc, sx(q1), yc, INK)
            c.line(sx(q3), yc, sx(hi_w), yc, INK)
            for w in (lo_w, hi_w):
                c.line(sx(w), yc - 6, sx(w), yc + 6, INK)
            c.rect(sx(q1), yc - 11, sx(q3) - sx(q1), 22, col, stroke=INK, opacity=0.45)
            c.line(sx(med), yc - 11, sx(med), yc + 11, INK, 2.5)
            right = max(sx(hi_w), max(sx(v) for v in s))
        else:
            lo, hi = r["spread"]
            if lo is not None and hi is not None:
                c.line(sx(lo), yc, sx(hi), yc, col, 3)
                for w in (lo, hi):
                    c.line(sx(w), yc - 7, sx(w), yc + 7, col, 2)
            c.marker("diamond", sx(r["p50"]), yc, 6, col, stroke=INK)
            right = max(sx(r["p50"]), sx(hi) if hi is not None else 0)
        c.text(right + 8, yc + 4, f"p50 {num(r['p50'])} ms", 11, "start", MUTED)
    return c.render()


def _overlap_area(a, b, pad=3.0) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0]) + pad
    h = min(a[3], b[3]) - max(a[1], b[1]) + pad
    return max(w, 0) * max(h, 0)


def _label_boxes(px, py, w, h, right_first: bool):
    """Candidate label boxes, nearest first: beside, above, below, then stepped further up and down."""
    sides = [px + 14, px - 14 - w] if right_first else [px - 14 - w, px + 14]
    yield from ((x, py - h / 2, x + w, py + h / 2) for x in sides)
    yield px - w / 2, py - 14 - h, px + w / 2, py - 14
    yield px - w / 2, py + 14, px + w / 2, py + 14 + h
    for k in range(1, 16):
        for dy in (16 * k, -16 * k):
            yield from ((x, py + dy - h / 2, x + w, py + dy + h / 2) for x in sides)


def scatter(points: list[dict], title: str, subtitle: str, xlabel: str, ylabel: str, legend,
            width: int = 1100, height: int = 500) -> str:
    """Log-log scatter with two-line point labels. Point keys: x, y, label, sublabel, colour, shape, ring.

    Labels are placed greedily: beside the point if that is free, else stepped up or down with a leader
    line, so nearby models (the fp32 teacher in PyTorch and in ONNX) stay readable.
    """
    c = Chart(width, height, title, subtitle, legend, left=70, right=30)
    sx = Scale(*domain([p["x"] for p in points], True, 0.12), c.x0, c.x1, True)
    sy = Scale(*domain([p["y"] for p in points], True, 0.12), c.y1, c.y0, True)
    c.x_axis(sx, xlabel)
    c.y_axis(sy, ylabel)
    placed = [(sx(p["x"]) - 10, sy(p["y"]) - 10, sx(p["x"]) + 10, sy(p["y"]) + 10) for p in points]
    for p in sorted(points, key=lambda p: sy(p["y"])):
        px, py = sx(p["x"]), sy(p["y"])
        w, h = max(text_width(p["label"], bold=True), text_width(p["sublabel"], 11)), 30
        best, best_cost = None, float("inf")
        for box in _label_boxes(px, py, w, h, px + 14 + w < c.x1):
            if box[0] < c.x0 + 2 or box[2] > c.w - 4 or box[1] < c.y0 - 6 or box[3] > c.y1:
                continue
            cost = sum(_overlap_area(box, o) for o in placed)
            if cost < best_cost:
                best, best_cost = box, cost
            if cost == 0:
                break
        box = best or (px + 14, py - h / 2, px + 14 + w, py + h / 2)
        placed.append(box)
        ly = (box[1] + box[3]) / 2
        nx, ny = min(max(px, box[0] - 2), box[2] + 2), min(max(py, box[1] - 2), box[3] + 2)
        if math.hypot(nx - px, ny - py) > 16:
            c.line(px, py, nx, ny, "#999", 1)
        c.text(box[0], ly - 2, p["label"], FONT, "start", INK, "600")
        c.text(box[0], ly + 12, p["sublabel"], 11, "start", MUTED)
    for p in points:
        if p.get("ring"):
            c.marker("ring", sx(p["x"]), sy(p["y"]), 11, "#111", width=1.6)
        c.marker(p["shape"], sx(p["x"]), sy(p["y"]), 6, p["colour"], stroke=INK)
    return c.render()


def grouped_bars(groups: list[str], series: list[tuple[str, str]], values: dict, title: str, subtitle: str,
                 ylabel: str, width: int = 1100, height: int = 340) -> str:
    """Bars per group, one per series, at ``central`` with a lo-hi error bar. values[(group, series)] = dict."""
    c = Chart(width, height, title, subtitle, [(s, col, "square") for s, col in series], left=70, bottom=34)
    tops = [v.get("hi", v.get("central")) for v in values.values()]
    sy = Scale(*domain(tops, zero=True, pad=0.12), c.y1, c.y0)
    c.y_axis(sy, ylabel)
    gw = (c.x1 - c.x0) / len(groups)
    bw = min(60.0, gw * 0.8 / len(series))
    for g, name in enumerate(groups):
        gx = c.x0 + gw * g + (gw - bw * len(series)) / 2
        c.text(c.x0 + gw * (g + 0.5), c.y1 + 18, name, 13, "middle", INK, "600")
        for k, (s, col) in enumerate(series):
            v = values.get((name, s))
            if not v or v.get("central") is None:
                continue
            x = gx + bw * k
            c.rect(x + 2, sy(v["central"]), bw - 4, sy(0) - sy(v["central"]), col, opacity=0.85)
            lo, hi = v.get("lo"), v.get("hi")
            if lo is not None and hi is not None:
                cx = x + bw / 2
                c.line(cx, sy(lo), cx, sy(hi), INK, 1.3)
                c.line(cx - 5, sy(lo), cx + 5, sy(lo), INK, 1.3)
                c.line(cx - 5, sy(hi), cx + 5, sy(hi), INK, 1.3)
            c.text(x + bw / 2, sy(hi if hi is not None else v["central"]) - 5, num(v["central"]), 10, "middle", MUTED)
    c.line(c.x0, sy(0), c.x1, sy(0), "#999")
    return c.render()


def lines(series: list[tuple[str, str, list[tuple[float, float]]]], title: str, subtitle: str, xlabel: str,
          ylabel: str, log_y: bool = False, width: int = 540, height: int = 280) -> str:
    """Line chart; series = (name, colour, [(x, y), ...]). Points are marked when they are few."""
    legend = [(n, col, "bar") for n, col, _ in series] if len(series) > 1 else None
    c = Chart(width, height, title, subtitle, legend, left=64)
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    sx = Scale(*domain(xs, pad=0.02), c.x0, c.x1)
    sy = Scale(*domain(ys, log_y), c.y1, c.y0, log_y)
    c.x_axis(sx, xlabel)
    c.y_axis(sy, ylabel)
    for _, col, pts in series:
        pts = [(x, y) for x, y in pts if not log_y or y > 0]
        c.path([(sx(x), sy(y)) for x, y in pts], col)
        if len(pts) <= 25:
            for x, y in pts:
                c.marker("circle", sx(x), sy(y), 3, col)
    return c.render()
