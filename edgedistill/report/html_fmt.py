"""Formatting helpers of the HTML report (html.py, html_plots.py): how a number, a range, a badge or a
missing part is written. A value that is absent prints as "–", never as 0; modelled figures carry their kind."""

from __future__ import annotations

from html import escape

from ..measure.energy import sig2

ROLE_STYLE = {"teacher": ("#d95f02", "square"), "student": ("#1b9e77", "circle")}
OTHER_ROLE = ("#7570b3", "diamond")
MEASURED = '<span class="badge measured">measured on this host</span>'


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _e(v) -> str:
    return escape("–" if v is None else str(v))


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _faster(v, noisy: bool = False) -> str:
    if v is None:
        return "–"
    if noisy:
        return "not reliable (noisy)"
    return f"{v:.2f}× faster" if v >= 1 else f"{1 / v:.2f}× slower"


def _pct(v, se=None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.2f}%" + (f" ± {100 * se:.2f}" if se is not None else "")


def _cos(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _sci(v) -> str:
    return "–" if v is None else f"{v:.2g}"


def _mb(b) -> float | None:
    return None if b is None else b / 1e6


def _modelled(kind: str | None) -> str:
    return f"modelled ({kind or 'unversioned'})"


def _badge(kind: str | None) -> str:
    return f'<span class="badge modelled">{escape(_modelled(kind))}</span>'


def _rng(r: dict | None, unit: str = "") -> str:
    if not r or r.get("central") is None:
        return "–"
    u = f" {unit}" if unit else ""
    # Only modelled figures come in ranges; they get two significant figures.
    return f"{sig2(r['central'])}{u} ({sig2(r.get('lo'))}–{sig2(r.get('hi'))})"


def _threads(report: dict) -> list[str]:
    ts = _get(report, "settings", "threads")
    if ts:
        return [str(t) for t in ts]
    seen: dict[str, None] = {}
    for m in report.get("models") or []:
        seen.update(dict.fromkeys(m.get("latency") or {}))
    return list(seen)


def _lat(m: dict, t: str | None) -> dict:
    return (m.get("latency") or {}).get(t) or {} if t else {}


def _spread(lat: dict) -> tuple[float | None, float | None]:
    s = list(lat.get("p50_spread_ms") or [])
    return (s[0], s[-1]) if s else (None, None)


def _role(m: dict) -> tuple[str, str]:
    return ROLE_STYLE.get(m.get("role"), OTHER_ROLE)


def _energy_kinds(report: dict) -> list[str]:
    kinds = {e.get("energy_kind") for m in report.get("models") or [] for e in (m.get("energy") or {}).values()
             if isinstance(e, dict)}
    kinds.add(_get(report, "headline", "energy_kind"))
    return sorted(k for k in kinds if k)


def _fig(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _na(what: str) -> str:
    return f'<p class="na">{escape(what)}: not available in this report.</p>'
