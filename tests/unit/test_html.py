"""The HTML bench report: one self-contained page, well-formed, defensive about missing parts."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from edgedistill.report.html import render_html
from edgedistill.report.html_plots import _pareto_points

PLOT_TITLES = ["Latency distribution per model", "Size – latency – quality trade-off (Pareto)",
               "Energy per inference by target", "Distillation loss curves", "Validation cosine to teacher"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictParser(HTMLParser):
    """Records every tag that is closed out of order or never closed."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def well_formed(page: str) -> list[str]:
    p = StrictParser()
    p.feed(page)
    p.close()
    return p.errors + [f"<{t}> never closed" for t in p.stack]


def svgs(page: str) -> list[ET.Element]:
    blocks = re.findall(r"<svg\b.*?</svg>", page, re.DOTALL)
    return [ET.fromstring(b) for b in blocks]


def energy(scale: float) -> dict:
    band = lambda c: {"lo": 0.7 * c, "central": c, "hi": 1.6 * c}
    return {t: {"energy_kind": "modelled-v2", "constants_version": f"{t}@sha256:abcd", "t_dev_ms": band(scale / 6),
                "energy_mj": band(scale), "inferences_per_battery_percent": band(9000 / scale),
                "fits_memory_budget": True, "fits_size_budget": t != "watch"} for t in ("phone", "watch")}


def model(name: str, role: str, quant: str, mb: float, p50: float, acc: float | None) -> dict:
    lat = {t: {"p50_ms": p50 * f, "p90_ms": p50 * f * 1.05, "p99_ms": p50 * f * 1.2, "mean_ms": p50 * f,
               "p50_spread_ms": [p50 * f * 0.97, p50 * f * 1.04], "peak_rss_mb": 40 + mb * 4,
               "samples_ms": [round(p50 * f * (0.9 + 0.01 * (i % 25)), 4) for i in range(60)]}
           for t, f in (("2", 1.0), ("1", 1.7))}
    quality = {"cosine_to_teacher": 1.0 if role == "teacher" else 0.87, "spearman_vs_teacher": 0.9}
    if acc is not None:
        quality.update(probe_accuracy=acc, probe_accuracy_se=0.009)
    return {"name": name, "role": role, "runtime": "pytorch" if name.endswith("pytorch") else "onnxruntime",
            "quantization": quant, "size_bytes": int(mb * 1e6), "latency": lat, "quality": quality,
            "energy": energy(p50 * 2)}


def report(name: str = "quickstart") -> dict:
    models = [model("teacher-pytorch", "teacher", "fp32", 90.9, 18.1, 0.8146),
              model("teacher-onnx-int8", "teacher", "int8-dynamic", 22.8, 6.8, 0.8068),
              model("student-onnx", "student", "fp32", 57.2, 3.4, 0.7900),
              model("student-onnx-int8", "student", "int8-dynamic", 14.4, 2.1, 0.7965)]
    return {
        "created": "2026-11-25T15:59:58Z", "recipe": {"name": name},
        "host": {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "torch": "2.13.0+cpu", "onnxruntime": "1.32.0"},
        "settings": {"batch_size": 1, "seq_length": 128, "warmup": 10, "runs": 50, "repeats": 3, "threads": [2, 1],
                     "target_threads": 4, "input": "real test-split text"},
        "target": {"name": "phone"}, "targets": ["phone", "watch"], "models": models,
        "distill": {"steps": 100, "train_seconds": 12.5,
                    "losses": [{"step": s, "lr": 1e-4, "loss": 1 / s, "cosine": 0.7 / s, "hidden_mse": 0.3 / s}
                               for s in range(10, 101, 10)],
                    "evals": [{"step": s, "val_cosine": 0.4 + 0.004 * s} for s in (0, 50, 100)]},
        "energy": {"measured": False, "note": "this host has no RAPL energy counters"},
        "headline": {"size_ratio": 6.33, "latency_p50_speedup": 8.5, "quality_retention": 0.978,
                     "vs_teacher_int8": {"size_ratio": 1.59, "latency_p50_speedup": 3.19, "quality_retention": 0.987},
                     "teacher": {"size_bytes": 90868376, "p50_ms": 18.1, "probe_accuracy": 0.8146},
                     "student": {"size_bytes": 14358016, "p50_ms": 2.1, "probe_accuracy": 0.7965},
                     "energy_kind": "modelled-v2",
                     "energy_ratio": {"phone": {"lo": 7.25, "central": 8.5, "hi": 9.75}}},
    }


def test_single_report_page_is_well_formed_and_shows_every_part():
    page = render_html([report()])
    assert page.startswith("<!DOCTYPE html>")
    assert well_formed(page) == []
    charts = svgs(page)
    assert [c.find("{http://www.w3.org/2000/svg}title").text.split(" (")[0].split(" —")[0] for c in charts] == \
        ["Latency distribution per model", "Size – latency – quality trade-off", "Energy per inference by target",
         "Distillation loss curves", "Validation cosine to teacher"]
    for title in PLOT_TITLES:
        assert title in page
    for name in ("teacher-pytorch", "teacher-onnx-int8", "student-onnx", "student-onnx-int8"):
        assert name in page
    assert "modelled (modelled-v2)" in page and "measured on this host" in page
    assert "8.5× (7.2–9.8)" in page  # the headline energy ratio comes with its lo-hi range, 2 significant figures
    assert "not available" not in page
    # self-contained: nothing is fetched when the page opens
    assert not re.search(r"""(src|href)\s*=|@import|url\(|<script""", page, re.IGNORECASE)


def test_pareto_optimum_needs_smaller_faster_and_at_least_as_accurate():
    r = report()
    pts = {p["label"]: p["ring"] for p in _pareto_points([(m["name"], m, "2", "#000", "circle") for m in r["models"]])}
    # student-onnx is bigger, slower and less accurate than student-onnx-int8; the rest each win on something
    assert pts == {"teacher-pytorch": True, "teacher-onnx-int8": True, "student-onnx": False,
                   "student-onnx-int8": True}


def test_missing_optional_parts_still_render_and_say_not_available():
    r = report()
    for m in r["models"]:
        del m["energy"]
        for lat in m["latency"].values():
            del lat["samples_ms"]
    del r["distill"], r["energy"]
    r["headline"].update(quality_retention=None, vs_teacher_int8=None)
    del r["headline"]["energy_ratio"]
    page = render_html([r])
    assert well_formed(page) == []
    assert len(svgs(page)) == 2  # latency (as p50 range bars) and Pareto; energy and training have no data
    assert page.count("not available in this report") == 3
    assert "Per-run samples are not available for 4 of 4 models" in page
    assert "not benchmarked in this run" in page


def test_a_bare_report_still_renders():
    page = render_html([{"models": [{"name": "only", "latency": {}, "quality": {}}]}])
    assert well_formed(page) == []
    assert svgs(page) == [] and page.count("not available in this report") >= 4


def test_two_reports_make_one_comparison_page():
    a, b = report("run-a"), report("run-b")
    for m in b["models"]:
        m["size_bytes"] //= 2
    page = render_html([a, b])
    assert well_formed(page) == []
    table = page[page.index("<h2>Comparison"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>.*?</tr>", table[table.index("<tbody>"):], re.DOTALL)
    assert len(rows) == 8
    assert sum("run-a" in row for row in rows) == 4 and sum("run-b" in row for row in rows) == 4
    pareto = next(c for c in svgs(page) if "all runs" in ET.tostring(c, encoding="unicode"))
    labels = {t.text for t in pareto.iter("{http://www.w3.org/2000/svg}text")}
    assert {"run-a/student-onnx-int8", "run-b/teacher-pytorch"} <= labels
    assert page.count("edgedistill bench: run 1: run-a") == 1 and "edgedistill bench: run 2: run-b" in page


def test_same_run_name_twice_is_told_apart():
    page = render_html([report("same"), report("same")])
    assert "same/student-onnx" in page and "same #2/student-onnx" in page


def test_text_is_escaped_everywhere():
    r = copy.deepcopy(report('x"&<marquee>'))
    r["models"][0]["name"] = "<script>alert(1)</script>"
    r["models"][0]["energy"]["<img src=x>"] = r["models"][0]["energy"]["phone"]
    page = render_html([r])
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<marquee" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "x&quot;&amp;&lt;marquee&gt;" in page
    assert well_formed(page) == []
    names = {t.text for c in svgs(page) for t in c.iter("{http://www.w3.org/2000/svg}text")}
    assert "<script>alert(1)</script>" in names  # escaped in the markup, intact once parsed


def test_grid_table_chart_and_weights_column_appear_only_with_their_data():
    plain = render_html([report()])
    assert "Latency grid" not in plain and "weights MB" not in plain  # a schema-1 report: no grid, no weights
    r = report()
    r["settings"]["grid"] = {"batch_sizes": [1], "seq_lengths": [128, 32, 256], "threads": 2}
    for m in r["models"]:
        m["latency"]["2"]["weights_bytes"] = m["size_bytes"]
        m["latency_grid"] = [{"batch_size": 1, "seq_length": s, "threads": 2, "p50_ms": m["latency"]["2"]["p50_ms"] * f,
                              "throughput_per_s": 1000 / (m["latency"]["2"]["p50_ms"] * f)}
                             for s, f in ((128, 1.0), (32, 0.3), (256, 2.4))]
    page = render_html([r])
    assert well_formed(page) == []
    assert "<th>batch 1 × seq 32</th>" in page and "weights MB" in page
    grid = next(c for c in svgs(page) if "Latency over the grid" in ET.tostring(c, encoding="unicode"))
    assert len(grid.findall(".//{http://www.w3.org/2000/svg}path")) >= 4  # one line per model
    assert "the grid also covers batch 1 × sequence length 128, 32, 256" in page
