"""The whole CLI path on a tiny random teacher, and what bad input does to earlier outputs."""

import json
import shutil

import pytest
from conftest import synthetic_rows, tiny_recipe, write_jsonl

from edgedistill.cli import main
from edgedistill.fileutil import sha256_file


def cli(*args, capsys=None) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr() if capsys else None
    return code, out.out if out else "", out.err if out else ""


@pytest.fixture(scope="module")
def tiny_run(tiny_teacher, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    data = write_jsonl(tmp / "data.jsonl", synthetic_rows(400))
    recipe = tiny_recipe(tmp, tiny_teacher, data)
    run_dir = tmp / "run"
    assert main(["run", str(recipe), "-o", str(run_dir)]) == 0
    return tmp, recipe, run_dir


def test_run_writes_student_bundle_and_report(tiny_run):
    tmp, recipe, run_dir = tiny_run
    d = json.loads((run_dir / "student" / "distill.json").read_text())
    assert d["student"]["kept_teacher_layers"] == [0, 3] and d["steps"] == 30
    assert d["recipe"]["sha256"] and len(d["teacher"]["sha256"]) == 64 and d["losses"]
    from transformers import AutoModel

    assert AutoModel.from_pretrained(run_dir / "student").config.num_hidden_layers == 2
    m = json.loads((run_dir / "bundles" / "phone" / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["quantization"]["scheme"] == "int8-dynamic"
    for name, info in m["files"].items():
        assert sha256_file(run_dir / "bundles" / "phone" / name) == info["sha256"]
    r = json.loads((run_dir / "report" / "report.json").read_text())
    assert r["schema_version"] == 2
    assert r["settings"]["grid"] == {"batch_sizes": [1], "seq_lengths": [32], "threads": r["settings"]["threads"][0]}
    h = r["headline"]
    assert {"size_ratio", "latency_p50_speedup", "quality_retention", "vs_teacher_int8", "settings"} <= set(h)
    assert {"size_ratio", "latency_p50_speedup", "quality_retention"} <= set(h["vs_teacher_int8"])
    assert [m["name"] for m in r["models"]] == ["teacher-pytorch", "teacher-onnx", "teacher-onnx-int8",
                                                "student-onnx", "student-onnx-int8"]
    assert (run_dir / "report" / "report.md").read_text().startswith("# edgedistill bench: tiny")
    # modelled device energy for every built-in target, labelled and with its range
    from edgedistill.targets import list_targets

    assert h["energy_kind"] == "modelled-v2" and set(h["energy_ratio"]) == set(list_targets())
    for band in h["energy_ratio"].values():
        assert 0 < band["lo"] <= band["central"] <= band["hi"]
    # batch dependence per exported scheme: fp32 graphs are batch-invariant, int8-dynamic is not
    dep = {m["name"]: m["quality"].get("batch_dependence") for m in r["models"]}
    assert dep["teacher-pytorch"] is None and dep["student-onnx"] < 1e-5
    assert dep["student-onnx-int8"] > dep["student-onnx"] and "batch_dependence" in r["quality"]
    assert "| batch dependence |" in (run_dir / "report" / "report.md").read_text()
    student = r["models"][-1]
    assert student["macs"]["int8"] > 0 and student["params"]["total"] > 0
    assert student["energy"]["watch"]["energy_kind"] == "modelled-v2"
    assert "Modelled on the device" in (run_dir / "report" / "report.md").read_text()


def _snapshot(folder):
    return {p.relative_to(folder): sha256_file(p) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", ["malformed_data", "missing_teacher", "corrupt_teacher", "bad_key", "bad_type"])
def test_bad_input_fails_cleanly_and_leaves_outputs_untouched(tiny_run, tmp_path, case, capsys):
    _, recipe, run_dir = tiny_run
    before = _snapshot(run_dir)
    text = recipe.read_text()
    if case == "malformed_data":
        (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{broken\n')
        text = text.replace(str(recipe.parent / "data.jsonl"), str(tmp_path / "bad.jsonl"))
        expected = "bad.jsonl:2: not valid JSON"
    elif case == "missing_teacher":
        text = text.replace('path = "', 'path = "/nonexistent', 1)
        expected = "teacher folder not found"
    elif case == "corrupt_teacher":
        teacher = tmp_path / "teacher"
        src = [line.split('"')[1] for line in text.splitlines() if line.startswith("path")][0]
        shutil.copytree(src, teacher)
        w = teacher / "model.safetensors"
        w.write_bytes(w.read_bytes()[:1000])
        text = text.replace(src, str(teacher), 1)
        expected = "cannot load the model weights"
    elif case == "bad_key":
        text = text.replace("[distill]", "[distill]\nepochs = 3")
        expected = "[distill] unknown key 'epochs'"
    else:
        text = text.replace("max_steps = 30", "max_steps = 3.5")
        expected = "key 'max_steps': expected an integer, got number 3.5"
    bad = tmp_path / "recipe.toml"
    bad.write_text(text)
    code, out, err = cli("distill", str(bad), "-o", str(run_dir), capsys=capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgedistill: error:") and expected in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(run_dir) == before


def test_parity_failure_writes_no_bundle_and_keeps_the_old_one(tiny_run, tmp_path, capsys):
    _, recipe, run_dir = tiny_run
    before = _snapshot(run_dir / "bundles" / "phone")
    target = tmp_path / "strict.toml"
    from edgedistill.targets import builtin_dir

    phone = (builtin_dir() / "phone.toml").read_text().replace('name = "phone"', 'name = "phone"', 1)
    target.write_text(phone.replace("[sources]", "[export.parity]\nmin_mean_cosine = 1.01\n\n[sources]"))
    code, _, err = cli("export", str(recipe), "-o", str(run_dir), "--target", str(target), capsys=capsys)
    assert code == 3 and "parity gate failed for int8-dynamic" in err and "no bundle written" in err
    assert _snapshot(run_dir / "bundles" / "phone") == before


def test_size_budget_is_enforced(tiny_run, tmp_path, capsys):
    _, recipe, run_dir = tiny_run
    from edgedistill.targets import builtin_dir

    text = (builtin_dir() / "watch.toml").read_text().replace('name = "watch"', 'name = "tinywatch"')
    text = text.replace("model_mb = { value = 30,", "model_mb = { value = 0.001,")
    (tmp_path / "tinywatch.toml").write_text(text)
    code, _, err = cli("export", str(recipe), "-o", str(run_dir), "--target", str(tmp_path / "tinywatch.toml"),
                       capsys=capsys)
    assert code == 3 and "over the target's 0.001 MB budget" in err
    assert not (run_dir / "bundles" / "tinywatch").exists()


def test_memory_budget_is_enforced_with_the_measured_figure(tiny_run, tmp_path, capsys):
    _, recipe, run_dir = tiny_run
    from edgedistill.targets import builtin_dir

    text = (builtin_dir() / "watch.toml").read_text().replace('name = "watch"', 'name = "lowmemwatch"')
    text = text.replace("memory_mb = { value = 100,", "memory_mb = { value = 0.01,")
    (tmp_path / "lowmemwatch.toml").write_text(text)
    code, _, err = cli("export", str(recipe), "-o", str(run_dir), "--target", str(tmp_path / "lowmemwatch.toml"),
                       capsys=capsys)
    assert code == 3 and "MB of memory (peak RSS" in err and "over the target's 0.01 MB budget" in err
    assert not (run_dir / "bundles" / "lowmemwatch").exists()
    manifest = json.loads((run_dir / "bundles" / "phone" / "manifest.json").read_text())
    assert 0 < manifest["memory"]["model_mb"] < manifest["memory"]["peak_rss_mb"]


def test_bundle_verify_cli(tiny_run, capsys):
    _, _, run_dir = tiny_run
    code, out, _ = cli("bundle", "verify", str(run_dir / "bundles" / "phone"), capsys=capsys)
    assert code == 0 and out.startswith("ok:")


def test_export_refuses_without_a_student(tiny_run, tmp_path, capsys):
    _, recipe, _ = tiny_run
    code, _, err = cli("export", str(recipe), "-o", str(tmp_path / "empty"), capsys=capsys)
    assert code != 0 and "no student at" in err and "edgedistill distill" in err


@pytest.mark.parametrize("edit, expected", [
    ("seq_length = 32", "key 'seq_length': 100 is longer than the teacher's maximum of 64 positions"),
    ("runs = 3", "key 'batch_size': batch 100000000"),
])
def test_bench_refuses_impossible_shapes_before_starting(tiny_run, tmp_path, edit, expected, capsys):
    _, recipe, run_dir = tiny_run
    text = recipe.read_text()
    text = text.replace(edit, {"seq_length = 32": "seq_length = 100",
                               "runs = 3": "runs = 3\nbatch_size = 100000000"}[edit])
    bad = tmp_path / "recipe.toml"
    bad.write_text(text)
    before = _snapshot(run_dir / "report")
    code, _, err = cli("bench", str(bad), "-o", str(run_dir), capsys=capsys)
    assert code == 2 and expected in err and err.count("\n") == 1
    assert _snapshot(run_dir / "report") == before


def test_bench_unknown_target(tiny_run, capsys):
    _, recipe, run_dir = tiny_run
    code, _, err = cli("bench", str(recipe), "-o", str(run_dir), "--target", "toaster", capsys=capsys)
    assert code == 2 and "unknown target 'toaster'" in err


def test_report_merges_runs_and_refuses_non_reports(tiny_run, tmp_path, capsys):
    _, _, run_dir = tiny_run
    html = (run_dir / "report" / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "modelled (modelled-v2)" in html
    code, out, _ = cli("report", str(run_dir), str(run_dir / "report" / "report.json"), "-o", str(tmp_path / "cmp"),
                       capsys=capsys)
    assert code == 0 and "comparison.html" in out
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert md.count("| tiny | student-onnx-int8 |") == 2
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = cli("report", str(tmp_path / "junk.json"), capsys=capsys)
    assert code == 2 and "not an edgedistill bench report" in err


def test_export_int8_static_calibrates_on_training_text_and_zips(tiny_run, tmp_path, capsys):
    _, recipe, run_dir = tiny_run
    out = tmp_path / "static"
    code, _, err = cli("export", str(recipe), "-o", str(out), "--student", str(run_dir / "student"), "--quant",
                       "int8-static", "--zip", capsys=capsys)
    assert code == 0, err
    info = json.loads((out / "export" / "student" / "export.json").read_text())
    assert "+" in info["schemes"]["int8-static"]  # cache key includes the calibration fingerprint
    m = json.loads((out / "bundles" / "phone" / "manifest.json").read_text())
    assert m["quantization"]["scheme"] == "int8-static" and m["parity"]["passed"] and m["format_version"] == 2
    assert m["created_with"]["onnxruntime"] and m["tokenizer"]["file"] == "tokenizer.json"
    code, out_text, _ = cli("bundle", "verify", str(out / "bundles" / "phone.zip"), capsys=capsys)
    assert code == 0 and "int8-static" in out_text
