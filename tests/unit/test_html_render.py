"""The HTML report as a browser draws it: headless Chromium renders a generated report without console
errors, the page is not blank, and the DOM it builds holds every chart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest
from test_html import report

from edgedistill.report.html import render_html

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium binary on PATH (.ci/run tries to install one)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]


def chromium(page, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, HOME=profile))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    r = report()
    r["settings"]["grid"] = {"batch_sizes": [1, 4], "seq_lengths": [128], "threads": 2}
    for m in r["models"]:
        m["latency_grid"] = [{"batch_size": b, "seq_length": 128, "threads": 2, "p50_ms": m["latency"]["2"]["p50_ms"] * f,
                              "throughput_per_s": b * 1000 / (m["latency"]["2"]["p50_ms"] * f)}
                             for b, f in ((1, 1.0), (4, 3.1))]
    path = tmp_path_factory.mktemp("render") / "report.html"
    path.write_text(render_html([r]))
    return path


def test_dom_has_every_chart_and_no_console_errors(page):
    proc = chromium(page, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-500:]
    dom = proc.stdout
    titles = re.findall(r"<svg\b.*?<title>(.*?)</title>", dom, re.DOTALL)
    assert [t.split(" (")[0].split(" —")[0] for t in titles] == [
        "Latency distribution per model", "Latency over the grid", "Size – latency – quality trade-off",
        "Energy per inference by target", "Distillation loss curves", "Validation cosine to teacher"]
    assert dom.count("<rect") > 20 and dom.count("<path") >= 4 and "student-onnx-int8" in dom
    assert not console_errors(proc.stderr), proc.stderr[-2000:]


def console_errors(stderr: str) -> list[str]:
    """Chromium logs every console message and uncaught error as ``INFO:CONSOLE:N] "..."`` on stderr."""
    return re.findall(r"CONSOLE[:(]\d+.*", stderr)


def test_the_console_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    errors = console_errors(chromium(bad, "--dump-dom").stderr)
    assert errors and "undefinedFunction" in errors[0]


def test_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    proc = chromium(page, "--window-size=1200,2400", f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-500:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, charts and palette colours, not one flat fill
    assert max(ImageStat.Stat(img).stddev) > 20
    # the charts' palette reached the pixels: the teacher's orange (#d95f02) and the student's green (#1b9e77)
    pixels = set(img.getdata())
    assert (0xD9, 0x5F, 0x02) in pixels and (0x1B, 0x9E, 0x77) in pixels
