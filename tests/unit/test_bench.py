import numpy as np
import pytest

from edgedistill.measure.latency import Job, make_inputs, measure, summarize
from edgedistill.report.results import build_headline, render_markdown
from edgedistill.export.onnx import export_onnx
from edgedistill.models.loading import load_encoder


def test_inputs_fill_every_position_with_real_tokens(tiny_teacher, tmp_path):
    _, tok = load_encoder(tiny_teacher)
    p = make_inputs(tok, ["a short one", "the movie was great and the cast was superb"], 2, 24, tmp_path / "i.npz")
    d = np.load(p)
    assert d["input_ids"].shape == (2, 24)
    assert d["attention_mask"].all()
    assert not np.array_equal(d["input_ids"][0], d["input_ids"][1])


def test_summary_uses_median_of_process_medians():
    rs = [{"latencies_ms": [1, 2, 3], "cpu_ms": [2, 4, 6], "load_s": 1, "first_inference_s": 0.1, "peak_rss_mb": 10},
          {"latencies_ms": [5, 6, 70], "cpu_ms": [9, 9, 9], "load_s": 2, "first_inference_s": 0.2, "peak_rss_mb": 30},
          {"latencies_ms": [3, 4, 5], "cpu_ms": [1, 1, 1], "load_s": 3, "first_inference_s": 0.3, "peak_rss_mb": 20}]
    s = summarize(rs, batch=2)
    assert s["p50_ms"] == 4 and s["p50_spread_ms"] == [2, 6] and s["peak_rss_mb"] == 20 and s["processes"] == 3
    assert s["throughput_per_s"] == 500.0 and s["cpu_ms"] == 4 and len(s["samples_ms"]) == 9
    assert s["noisy"]  # per-process medians 2, 4, 6 are far apart
    calm = [dict(r, latencies_ms=[10.0, 10.1, 10.2]) for r in rs]
    assert not summarize(calm)["noisy"]


def test_workers_time_onnx_and_torch_in_fresh_processes(tiny_teacher, tmp_path):
    export_onnx(tiny_teacher, tmp_path / "m.onnx", "mean", True, 32)
    _, tok = load_encoder(tiny_teacher)
    inputs = make_inputs(tok, ["the movie was great"], 1, 16, tmp_path / "i.npz")
    res = measure([Job("o", "onnx", str(tmp_path / "m.onnx"), 1, inputs),
                   Job("t", "torch", str(tiny_teacher), 1, inputs)], warmup=1, runs=4, repeats=2)
    for key in (("o", 1, 1, 16), ("t", 1, 1, 16)):
        r = res[key]
        assert r["processes"] == 2 and r["runs_per_process"] == 4
        assert 0 < r["p50_ms"] < 1000 and r["peak_rss_mb"] > 10
        assert r["rss_after_load_mb"] > 10
    # the ONNX worker never imports torch, so it is much lighter than the PyTorch one
    assert res[("o", 1, 1, 16)]["peak_rss_mb"] < res[("t", 1, 1, 16)]["peak_rss_mb"]
    # the runtime's own weights: torch parameters + buffers vs ONNX initializers, both near the fp32 parameter bytes
    params = sum(p.numel() for p in load_encoder(tiny_teacher)[0].parameters()) * 4
    assert res[("t", 1, 1, 16)]["weights_source"] == "torch parameters + buffers"
    assert params <= res[("t", 1, 1, 16)]["weights_bytes"] < 1.1 * params
    assert res[("o", 1, 1, 16)]["weights_source"] == "ONNX graph initializers"
    assert 0.8 * params < res[("o", 1, 1, 16)]["weights_bytes"] < 1.2 * params
    assert res[("o", 1, 1, 16)]["arena_bytes"] is None and "arena" in res[("o", 1, 1, 16)]["arena_note"]


def test_failing_worker_is_a_clear_error(tmp_path):
    from edgedistill.errors import EdgedistillError

    np.savez(tmp_path / "i.npz", input_ids=np.zeros((1, 4), dtype=np.int64))
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    with pytest.raises(EdgedistillError, match="benchmark of bad"):
        measure([Job("bad", "onnx", str(tmp_path / "bad.onnx"), 1, tmp_path / "i.npz")], 0, 1, 1)


def _model(name, size, p50, acc):
    lat = {"p50_ms": p50, "p50_spread_ms": [p50, p50], "peak_rss_mb": 50}
    return {"name": name, "runtime": "x", "quantization": "q", "size_bytes": size, "latency": {"2": lat, "1": lat},
            "quality": {"probe_accuracy": acc, "probe_accuracy_se": 0.01, "probe_test_n": 100}}


def test_headline_ratios_and_markdown():
    report = {
        "models": [_model("teacher-pytorch", 900, 16.0, 0.80), _model("teacher-onnx-int8", 225, 6.0, 0.79),
                   _model("student-onnx-int8", 150, 2.0, 0.78)],
        "settings": {"threads": [2, 1], "batch_size": 1, "seq_length": 128, "warmup": 1, "runs": 2, "repeats": 1,
                     "target_threads": 4, "input": "x"},
        "host": {"cpu": "cpu", "cores": 2, "torch": "t", "onnxruntime": "o"},
        "recipe": {"name": "r"}, "target": {"name": "phone"}, "quality": {}, "energy": {"note": "n"},
    }
    correct = np.array([1, 0, 1, 1] * 25, dtype=bool)
    h = build_headline(report, {"student-onnx-int8": {"_correct": correct}, "teacher-pytorch": {"_correct": correct}})
    assert h["size_ratio"] == 6.0 and h["latency_p50_speedup"] == 8.0
    assert h["quality_retention"] == pytest.approx(0.975)
    assert h["vs_teacher_int8"] == {"size_ratio": 1.5, "latency_p50_speedup": 3.0, "latency_noisy": False,
                                    "quality_retention": pytest.approx(0.78 / 0.79)}
    assert h["settings"] == {"host": "cpu", "host_cores": 2, "threads": 2, "batch_size": 1, "seq_length": 128}
    report["headline"] = h
    md = render_markdown(report)
    assert "**6.00x** smaller" in md and "**8.00x** faster" in md and "97.5%" in md
    assert "int8 kernels" not in md
    report["host"]["ort_int8_kernels"] = "u8u8 (exact; ...)"  # an x86 host without VNNI: its int8 timings say so
    assert "int8 ONNX latency on this host is that of the slower exact kernels" in render_markdown(report)


def test_speedups_are_paired_by_round():
    from edgedistill.report.results import ratios

    def timed(name, per_process):
        m = _model(name, 100, sorted(per_process)[len(per_process) // 2], 0.8)
        m["latency"] = {"2": {**m["latency"]["2"], "p50_ms_per_process": per_process, "noisy": True}}
        return m

    # The host slowed down in round 2 for both: the absolute p50s spread 50% but every round says 8x.
    r = ratios(timed("t", [16.0, 24.0, 16.8]), timed("s", [2.0, 3.0, 2.1]), "2")
    assert r["latency_p50_speedup"] == pytest.approx(8.0) and not r["latency_noisy"]
    assert r["latency_p50_speedup_rounds"] == [8.0, 8.0, 8.0]
    # A fast teacher round next to a slow student round: the same-round ratios disagree, so it is noisy.
    r = ratios(timed("t", [16.0, 16.0, 16.0]), timed("s", [2.0, 3.0, 2.0]), "2")
    assert r["latency_p50_speedup"] == pytest.approx(8.0) and r["latency_noisy"]
    # From 5 rounds the spread is the interquartile range: one round hit by a burst does not void the others,
    # but rounds that disagree throughout still do.
    assert not ratios(timed("t", [16.0] * 5), timed("s", [2.0, 2.05, 2.0, 3.0, 1.98]), "2")["latency_noisy"]
    assert ratios(timed("t", [16.0] * 5), timed("s", [2.0, 2.6, 1.6, 3.0, 2.2]), "2")["latency_noisy"]


def test_a_speedup_from_noisy_timings_is_never_printed_as_a_headline(capsys):
    from edgedistill.report.html import render_html
    from edgedistill.report.summary import print_summary

    noisy = _model("student-onnx-int8", 150, 2.0, 0.78)
    noisy["latency"] = {"2": {**noisy["latency"]["2"], "noisy": True}, "1": noisy["latency"]["1"]}
    report = {
        "models": [_model("teacher-pytorch", 900, 192.0, 0.80), noisy],
        "settings": {"threads": [2, 1], "batch_size": 1, "seq_length": 128, "warmup": 1, "runs": 2, "repeats": 1,
                     "target_threads": 4, "input": "x"},
        "host": {"cpu": "cpu", "cores": 2, "torch": "t", "onnxruntime": "o"},
        "recipe": {"name": "r"}, "target": {"name": "phone"}, "quality": {}, "energy": {"note": "n"},
        "files": {"html": "r.html", "markdown": "r.md", "json": "r.json"},
    }
    correct = np.array([1, 0, 1, 1] * 25, dtype=bool)
    h = build_headline(report, {"student-onnx-int8": {"_correct": correct}, "teacher-pytorch": {"_correct": correct}})
    assert h["latency_p50_speedup"] == 96.0 and h["latency_noisy"] and not h["latency_noisy_1_thread"]
    report["headline"] = h
    print_summary(report)
    out = capsys.readouterr().out
    assert "96" not in out.split("student vs teacher")[1] and "not reliable (noisy" in out
    md = render_markdown(report)
    assert "**96.00x**" not in md and "fp32 (2 threads): speed-up not reliable (noisy timings)" in md
    assert "96.00x faster" not in md.split("(96.00x faster at 1 thread)")[0]
    assert "(96.00x faster at 1 thread)" in md  # the 1-thread timings were calm
    page = render_html([report])
    assert '<div class="v">not reliable (noisy)</div>' in page and '<div class="v">96.00×' not in page


def test_grid_plan_times_the_headline_cell_at_every_thread_count_and_the_rest_at_the_first(tiny_teacher, tmp_path):
    from edgedistill.measure.grid import Timed, layout, plan

    _, tok = load_encoder(tiny_teacher)
    models = [Timed("a", "onnx", "a.onnx", tok), Timed("b", "onnx", "b.onnx", None, vocab=97)]
    jobs = plan(models, [2, 1], [1, 4], [16, 8], ["the movie was great", "a dull plot"], tmp_path)
    cells = [(j.name, j.threads, j.cell) for j in jobs]
    assert cells[:4] == [("a", 2, (1, 16)), ("a", 1, (1, 16)), ("b", 2, (1, 16)), ("b", 1, (1, 16))]
    assert len(cells) == 4 + 2 * 3 and all(th == 2 for _, th, _ in cells[4:])
    assert {c for *_, c in cells} == {(1, 16), (1, 8), (4, 16), (4, 8)}
    ids = np.load(next(j.inputs for j in jobs if j.name == "b"))["input_ids"]
    assert ids.min() >= 0 and ids.max() < 97  # no tokenizer: random ids inside the vocabulary
    lat = {(n, th, *c): {"p50_ms": float(th + c[0] + c[1]), "samples_ms": [1.0]} for n, th, c in cells}
    head, grid = layout(lat, "a", [2, 1], [1, 4], [16, 8])
    assert head == {"2": lat[("a", 2, 1, 16)], "1": lat[("a", 1, 1, 16)]}
    assert [(g["batch_size"], g["seq_length"], g["p50_ms"]) for g in grid] == [(1, 16, 19.0), (1, 8, 11.0),
                                                                             (4, 16, 22.0), (4, 8, 14.0)]
    assert "samples_ms" not in grid[0]


def test_executorch_runner_wraps_the_backends_pte_outputs(monkeypatch):
    from edgedistill.backends import et
    from edgedistill.measure.runners import load

    seen = {}

    def pte_outputs(path, threads):
        seen.update(path=path, threads=threads)
        rows = lambda feed: feed["input_ids"].shape[0]  # noqa: E731

        def run(feed):
            return [np.zeros((rows(feed), 2, 3), dtype=np.float32),
                    np.ones((rows(feed), 3), dtype=np.float32) * feed["input_ids"].dtype.itemsize]

        run.num_outputs = 2  # an encoder program: token states, sentence embedding
        return run

    monkeypatch.setattr(et, "pte_outputs", pte_outputs)
    loaded = load("executorch", "m.pte", 2)
    emb = loaded.embed({"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1], [1, 1]]})
    assert seen == {"path": "m.pte", "threads": 2} and emb.shape == (2, 3) and emb[0, 0] == 8  # int64 ids
    assert loaded.memory()["weights_bytes"] is None and "ExecuTorch" in loaded.memory()["arena_note"]
