"""Batch dependence per exported scheme: fp32 ~ float rounding, int8-dynamic visibly larger."""

import pytest
from conftest import synthetic_rows

from edgedistill.export.onnx import export_onnx, onnx_embedder, optimize
from edgedistill.export.quant import get_scheme
from edgedistill.models.loading import load_tokenizer
from edgedistill.quality.batch_dependence import BATCH, max_abs_diff, mixed_lengths
from edgedistill.report.results import render_markdown

TEXTS = [r["text"] for r in synthetic_rows(200, seed=3)]


@pytest.fixture(scope="module")
def graphs(tiny_teacher, tmp_path_factory):
    d = tmp_path_factory.mktemp("batchdep")
    info = export_onnx(tiny_teacher, d / "raw.onnx", "mean", True, 32)
    optimize(d / "raw.onnx", d / "fp32.onnx", "bert", info["num_heads"], info["hidden_size"], info["num_layers"])
    get_scheme("int8-dynamic").fn(d / "fp32.onnx", d / "int8.onnx")
    return d


def test_the_batch_spans_short_to_long_real_sentences(tiny_teacher):
    tok = load_tokenizer(tiny_teacher)
    batch = mixed_lengths(tok, TEXTS, 32)
    lengths = [len(tok(t)["input_ids"]) for t in batch]
    all_lengths = [len(tok(t)["input_ids"]) for t in TEXTS]
    assert len(batch) == BATCH and set(batch) <= set(TEXTS)
    assert min(lengths) == min(all_lengths) and max(lengths) == max(all_lengths)
    assert mixed_lengths(tok, TEXTS[:3], 32) == TEXTS[:3]


def test_int8_dynamic_depends_on_the_batch_and_fp32_does_not(graphs, tiny_teacher):
    tok = load_tokenizer(tiny_teacher)
    batch = mixed_lengths(tok, TEXTS, 32)
    fp32 = max_abs_diff(onnx_embedder(graphs / "fp32.onnx", 1), tok, batch, 32)
    int8 = max_abs_diff(onnx_embedder(graphs / "int8.onnx", 1), tok, batch, 32)
    assert fp32 < 1e-5
    assert int8 > max(100 * fp32, 2e-5)  # ~1e-4 on this tiny random model, ~1e-2 on real students
    assert max_abs_diff(onnx_embedder(graphs / "fp32.onnx", 1), tok, batch[:1], 32) is None


def test_report_shows_the_column_and_the_protocol():
    lat = {"p50_ms": 1.0, "p50_spread_ms": [1.0, 1.0], "peak_rss_mb": 50}
    models = [{"name": n, "runtime": "onnxruntime", "quantization": q, "size_bytes": 100, "latency": {"1": lat},
               "quality": {"probe_accuracy": 0.8, "probe_accuracy_se": 0.01, "batch_dependence": v}}
              for n, q, v in (("student-onnx", "fp32", 2.4e-7), ("student-onnx-int8", "int8-dynamic", 0.0123))]
    report = {"models": models, "headline": {"latency_p50_speedup": None},
              "settings": {"threads": [1], "batch_size": 1, "seq_length": 32, "warmup": 1, "runs": 2, "repeats": 1,
                           "input": "x", "target_threads": 1},
              "host": {"cpu": "cpu", "cores": 2, "torch": "t", "onnxruntime": "o"}, "recipe": {"name": "r"},
              "target": {"name": "phone"}, "quality": {"batch_dependence": "alone vs batch of 16"},
              "energy": {"note": "n"}, "mode": "models"}
    md = render_markdown(report)
    assert "| batch dependence |" in md and "| 0.012 |" in md and "| 2.4e-07 |" in md
    assert "Batch dependence: alone vs batch of 16" in md
    from edgedistill.report.html import render_html

    html = render_html([report])
    assert "batch dependence" in html and "0.012" in html
