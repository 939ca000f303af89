"""``edgedistill bench --model``: any model kind outside a run folder, and the bad inputs it refuses."""

from __future__ import annotations

import json

import pytest
from conftest import build_tiny_bert, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill.bench.kinds import detect
from edgedistill.measure.runners import load
from edgedistill.cli import main
from edgedistill.errors import ModelError
from edgedistill.export.bundle import write_bundle
from edgedistill.export.onnx import export_onnx


@pytest.fixture(scope="module")
def zoo(tiny_teacher, tmp_path_factory):
    """A teacher folder, a smaller student folder, its ONNX export and a bundle of it."""
    tmp = tmp_path_factory.mktemp("zoo")
    student = build_tiny_bert(tmp / "student", layers=2, seed=1)
    onnx = tmp / "student.onnx"
    export_onnx(student, onnx, "mean", True, 32)
    bundle = write_bundle(tmp / "bundle", onnx, student, {"backend": "onnxruntime", "pooling": "mean",
                                                          "normalize": True, "quantization": {"scheme": "fp32"}})
    export_onnx(tiny_teacher, tmp / "teacher.onnx", "mean", True, 32)
    # ONNX-only in the timed test: a PyTorch worker takes seconds to import torch; the torch runner is
    # timed in test_bench.py
    teacher_bundle = write_bundle(tmp / "teacher-bundle", tmp / "teacher.onnx", tiny_teacher,
                                  {"backend": "onnxruntime", "quantization": {"scheme": "fp32"}})
    data = write_jsonl(tmp / "data.jsonl", synthetic_rows(160))
    return {"teacher": tiny_teacher, "student": student, "onnx": onnx, "bundle": bundle, "data": data, "tmp": tmp,
            "teacher_bundle": teacher_bundle}


def test_each_kind_is_detected_with_its_shape_and_tokenizer(zoo):
    hf = detect(zoo["student"])
    assert (hf.backend, hf.runtime, hf.tokenizer_dir) == ("torch", "pytorch", zoo["student"])
    assert hf.shape.layers == 2 and hf.shape.positions == 64
    bare = detect(zoo["onnx"])
    assert (bare.backend, bare.quantization, bare.tokenizer_dir) == ("onnxruntime", "fp32", None)
    # read off the graph's initializers: same shape as the config says
    assert (bare.shape.vocab, bare.shape.hidden, bare.shape.layers, bare.shape.ffn, bare.shape.positions) == \
        (hf.shape.vocab, 32, 2, 64, 64)
    b = detect(zoo["bundle"])
    assert (b.backend, b.tokenizer_dir, b.quantization, b.model_file.name) == ("onnxruntime", zoo["bundle"], "fp32",
                                                                             "model.onnx")
    assert b.bundle["backend"] == "onnxruntime" and b.size_bytes == zoo["onnx"].stat().st_size


def test_executorch_bundle_is_detected_and_a_missing_runtime_is_a_clear_error(zoo, tmp_path, monkeypatch):
    pte = tmp_path / "model.pte"
    pte.write_bytes(b"\x1c\x00\x00\x00ET12" + bytes(64))
    bundle = write_bundle(tmp_path / "b", zoo["onnx"], zoo["student"], {"backend": "executorch"})
    # write_bundle names its model model.onnx; an ExecuTorch bundle names model.pte in its manifest
    (bundle / "model.onnx").unlink()
    pte.rename(bundle / "model.pte")
    m = json.loads((bundle / "manifest.json").read_text())
    from edgedistill.fileutil import sha256_file

    m["files"].pop("model.onnx")
    m["files"]["model.pte"] = {"sha256": sha256_file(bundle / "model.pte"), "bytes": 72}
    m["model_file"] = "model.pte"
    (bundle / "manifest.json").write_text(json.dumps(m))
    src = detect(bundle)
    assert (src.backend, src.runtime, src.tokenizer_dir) == ("executorch", "executorch", bundle)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    with pytest.raises(ModelError, match=r"needs the executorch package, which needs torch: "
                                         r"pip install 'edgedistill\[executorch\]'"):
        load("executorch", src.model_file, 1)


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.onnx", "no such file or folder"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a model file; expected"),
    (lambda d: (d / "junk.onnx").write_bytes(b"\x00junk\xff" * 10) and d / "junk.onnx", "not an ONNX model"),
    (lambda d: (d / "junk.pte").write_bytes(b"0123456789") and d / "junk.pte", "not an ExecuTorch program"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "not a model folder (no config.json or manifest.json)"),
])
def test_a_path_that_is_not_a_model_is_one_clear_line(tmp_path, make, expected, capsys):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        detect(path)
    assert main(["bench", "--model", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedistill: error: ") and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--target", "toaster"], "unknown target 'toaster'"),
    ({"seq_length": [32, 100]}, "key 'seq_length': 100 is longer than the student (pytorch)'s maximum of 64"),
    ({"batch_size": [1, 100000000]}, "key 'batch_size': batch 100000000"),
    (["--teacher", "/nonexistent/teacher"], "/nonexistent/teacher: no such file or folder"),
])
def test_bad_inputs_are_refused_before_any_work(zoo, tmp_path, extra, expected, capsys):
    bench = extra if isinstance(extra, dict) else {}
    recipe = tiny_recipe(tmp_path, zoo["teacher"], zoo["data"], bench=bench)
    args = extra if isinstance(extra, list) else []
    code = main(["bench", str(recipe), "--model", str(zoo["student"]), "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_options_that_need_model_mode_are_usage_errors(tmp_path, capsys):
    assert main(["bench", "--teacher", str(tmp_path)]) == 2
    assert "--teacher and --tokenizer go with --model" in capsys.readouterr().err


def test_bench_any_models_against_a_teacher_over_a_grid(zoo, tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, zoo["teacher"], zoo["data"],
                         bench={"runs": 2, "warmup": 0, "repeats": 1, "threads": [1], "batch_size": 1,
                                "seq_length": [16, 8]})
    out = tmp_path / "out"
    code = main(["bench", str(recipe), "--model", str(zoo["bundle"]), "--model", str(zoo["onnx"]),
                 "--teacher", str(zoo["teacher_bundle"]), "--target", "watch", "-o", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "vs teacher:" in stdout
    r = json.loads((out / "report" / "report.json").read_text())
    assert r["schema_version"] == 2 and r["mode"] == "models"
    by = {m["name"]: m for m in r["models"]}
    assert list(by) == ["teacher-bundle (onnxruntime)", "bundle (onnxruntime)", "student.onnx"]
    assert r["settings"]["seq_length"] == 16 and r["settings"]["grid"]["seq_lengths"] == [16, 8]
    for m in r["models"]:
        assert [(c["batch_size"], c["seq_length"]) for c in m["latency_grid"]] == [(1, 16), (1, 8)]
        assert m["latency"]["1"]["p50_ms"] == m["latency_grid"][0]["p50_ms"]  # the headline cell is the first
        assert m["latency"]["1"]["weights_bytes"] > 0 and list(m["energy"]) == ["watch"]
    # the bundle brings its tokenizer, so it is probed; the bare .onnx has none and says why
    assert by["bundle (onnxruntime)"]["quality"]["probe_accuracy"] > 0
    assert by["bundle (onnxruntime)"]["quality"]["cosine_to_teacher"] < 1
    assert by["student.onnx"]["quality"] == {} and "pass --tokenizer DIR" in by["student.onnx"]["quality_note"]
    vs = r["headline"]["vs_teacher"]
    assert set(vs) == {"bundle (onnxruntime)", "student.onnx"}
    assert vs["bundle (onnxruntime)"]["size_ratio"] == pytest.approx(
        by["teacher-bundle (onnxruntime)"]["size_bytes"] / by["bundle (onnxruntime)"]["size_bytes"])
    md = (out / "report" / "report.md").read_text()
    assert "## Latency grid" in md and "| batch 1 x seq 16 | batch 1 x seq 8 |" in md and "## Against the teacher" in md
    html = (out / "report" / "report.html").read_text()
    assert "Latency grid" in html and "bundle (onnxruntime) vs the teacher" in html and "Distillation" not in html


def test_labels_name_the_model_not_just_the_file():
    from pathlib import Path

    from edgedistill.bench.kinds import Source

    def src(path, bundle=None):
        return Source(Path(path), "onnxruntime", Path(path), "int8-dynamic", 1, bundle=bundle)

    assert src("/r/headline/bundles/phone", bundle={}).label == "headline/phone (onnxruntime, int8-dynamic)"
    assert src("/r/alt/bundles/phone", bundle={}).label != src("/r/headline/bundles/phone", bundle={}).label
    assert src("/r/export/teacher/model-int8-dynamic.onnx").label == "teacher/model-int8-dynamic.onnx"
    assert src("/x/student.onnx").label == "student.onnx"
