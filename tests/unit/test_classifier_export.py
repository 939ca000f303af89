"""Classifier students on every export path: ONNX schemes and ExecuTorch, the logit parity gate, bundles with
label names from the data, the torch-free runtime's predict, and the task check on student folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import (
    classification_recipe,
    classifier_teacher,
    load_benchmark,
    synthetic_rows,
    tiny_recipe,
    write_jsonl,
)

from edgedistill import api
from edgedistill.cli import main
from edgedistill.errors import GateError, ModelError

NAMES = ("bad review", "good review")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_teacher):
    """A classification run on named labels: teacher classes and student trained, nothing exported yet."""
    tmp = tmp_path_factory.mktemp("clsx")
    rows = synthetic_rows(200)
    for r in rows:
        r["label"] = NAMES[r["label"]]
    data = write_jsonl(tmp / "named.jsonl", rows)
    # a teacher whose classes are the data's names (as 'edgedistill teacher classifier' writes them)
    teacher = classifier_teacher(tiny_teacher, tmp / "teacher")
    cfg = json.loads((teacher / "config.json").read_text())
    cfg["id2label"] = {"0": NAMES[0], "1": NAMES[1]}
    cfg["label2id"] = {NAMES[0]: 0, NAMES[1]: 1}
    (teacher / "config.json").write_text(json.dumps(cfg))
    recipe = classification_recipe(tmp, teacher, data, max_steps=20, losses={"kd": 1.0, "hard_ce": 0.5})
    api.distill(recipe, tmp / "run")
    return recipe, tmp / "run", data


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def test_onnx_int8_bundle_predicts_label_names(run, capsys):
    recipe, out, _ = run
    (bundle,) = api.export(recipe, out)
    m = _manifest(bundle)
    assert m["task"] == "classification" and m["labels"] == list(NAMES) and m["num_labels"] == 2
    assert m["quantization"]["scheme"] == "int8-dynamic" and m["outputs"][-1]["name"] == "logits"
    par = m["parity"]
    assert par["passed"] and par["metric"] == "classification" and par["top1_agreement"] >= 0.97
    assert par["labelled_sentences"] > 0 and par["accuracy_exported"] is not None
    texts = ["the movie was great and wonderful", "a dull and boring plot"]
    res = api.predict(bundle, texts)
    assert {r["label"] for r in res} <= set(NAMES)
    for r in res:
        assert set(r["scores"]) == set(NAMES) and abs(sum(r["scores"].values()) - 1) < 1e-5
        assert r["score"] == max(r["scores"].values())
    # the bundle agrees with the fp32 PyTorch student on the top class
    from edgedistill.tasks.classification import torch_logits

    ref = torch_logits(out / "student", texts, 32).argmax(1)
    assert [NAMES[i] for i in ref] == [r["label"] for r in res]
    assert main(["predict", "--bundle", str(bundle), *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in NAMES and texts[0] in lines[0]
    assert main(["predict", "--bundle", str(bundle), "--json", texts[0]]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got[0]["label"] in NAMES and got[0]["text"] == texts[0]


@pytest.mark.parametrize("scheme", ["fp32", "int8-static", "int4-weight"])
def test_other_onnx_schemes(run, scheme):
    recipe, out, _ = run
    (bundle,) = api.export(recipe, out, quant=scheme, targets=["watch"])
    m = _manifest(bundle)
    assert m["quantization"]["scheme"] == scheme and m["parity"]["passed"]
    if scheme == "fp32":
        assert m["parity"]["top1_agreement"] == 1.0 and m["parity"]["max_abs_diff"] < 1e-3
    assert api.predict(bundle, ["great film"])[0]["label"] in NAMES


def test_executorch_bundle_predicts_label_names(run):
    pytest.importorskip("executorch")
    recipe, out, _ = run
    (bundle,) = api.export(recipe, out, quant="et-int8", targets=["watch"])
    m = _manifest(bundle)
    assert m["backend"] == "executorch" and m["model_file"] == "model.pte" and m["labels"] == list(NAMES)
    assert m["outputs"][-1] == {"name": "logits", "dtype": "float32", "shape": [1, 2]}
    assert m["parity"]["passed"]
    onnx = api.export(recipe, out, quant="fp32", targets=["watch"])[0]
    texts = ["a wonderful superb cast", "tedious and painful"]
    a, b = api.predict(bundle, texts), api.predict(onnx, texts)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=0.05)


def test_parity_gate_refuses_and_names_the_next_scheme(run, monkeypatch):
    from edgedistill.tasks import classification_parity as cls

    recipe, out, _ = run
    monkeypatch.setattr(cls, "thresholds_for", lambda scheme, target=None: {"min_top1_agreement": 1.01,
                                                                           "max_accuracy_drop": 0.0})
    before = {p.name for p in (out / "bundles").iterdir()} if (out / "bundles").exists() else set()
    with pytest.raises(GateError, match="parity gate failed for int4-weight.*top-1 agreement.*try --quant int8-dynamic"):
        api.export(recipe, out, quant="int4-weight", targets=["tablet"])
    assert not (out / "bundles" / "tablet").exists()
    assert before <= ({p.name for p in (out / "bundles").iterdir()} if before else set())


def test_task_mismatch_is_one_line_not_a_silent_head_drop(run, tmp_path, tiny_teacher, capsys):
    recipe, out, data = run
    emb_recipe = tiny_recipe(tmp_path, tiny_teacher, data)  # an embedding recipe
    with pytest.raises(ModelError, match="is a sequence classifier.*would drop its classification head"):
        api.export(emb_recipe, tmp_path / "x", student=out / "student")
    assert main(["export", str(emb_recipe), "-o", str(tmp_path / "x"), "--student", str(out / "student")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "classification head" in err
    enc = shutil.copytree(tiny_teacher, tmp_path / "encoder")
    with pytest.raises(ModelError, match="encoder without a classification head but .* classification recipe"):
        api.export(recipe, tmp_path / "y", student=enc)
    assert not (tmp_path / "x" / "bundles").exists() and not (tmp_path / "y" / "bundles").exists()


def test_run_end_to_end_benches_against_the_teacher_classifier(tmp_path, tiny_teacher, capsys):
    """`edgedistill run` on a classification recipe: distill -> export -> bench, accuracy in the reports."""
    data = write_jsonl(tmp_path / "ints.jsonl", synthetic_rows(160))  # integer labels: the teacher's class ids
    teacher = classifier_teacher(tiny_teacher, tmp_path / "teacher")
    recipe = classification_recipe(tmp_path, teacher, data, max_steps=10, losses={"kd": 1.0})
    text = recipe.read_text().replace("[bench]\n", '[bench]\nmodels = ["teacher-pytorch", "teacher-onnx-int8", '
                                                   '"student-onnx-int8"]\n')
    recipe.write_text(text)
    assert main(["run", str(recipe), "-o", str(tmp_path / "run")]) == 0
    summary = capsys.readouterr().out
    assert "accuracy" in summary and "probe acc" not in summary  # the terminal summary names the metric
    rep = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert rep["task"] == "classification" and rep["quality"]["metric"] == "accuracy"
    by = {m["name"]: m for m in rep["models"]}
    for name in ("teacher-pytorch", "teacher-onnx-int8", "student-onnx-int8"):
        q = by[name]["quality"]
        assert 0.0 <= q["accuracy"] <= 1.0 and q["test_n"] == rep["quality"]["test_sentences"] > 0
        assert "agreement_with_teacher" in q and by[name]["latency"]
    assert by["teacher-pytorch"]["quality"]["agreement_with_teacher"] == 1.0
    bundle = json.loads((tmp_path / "run" / "bundles" / "phone" / "manifest.json").read_text())
    assert bundle["labels"] == ["negative", "positive"]  # the teacher's names, carried by the student
    h = rep["headline"]
    assert h["size_ratio"] > 1 and h["accuracy_retention"] == h["quality_retention"] is not None
    assert h["teacher"]["accuracy"] == by["teacher-pytorch"]["quality"]["accuracy"]
    assert h.get("energy_ratio") and h["energy_kind"] == "modelled-v2"
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "| accuracy |" in md and "top-1 agreement with the fp32 student" in md
    html = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "accuracy ± SE" in html and "Quality retention (accuracy)" in html


def test_parity_thresholds_follow_the_scheme_and_the_sample_resolution():
    from edgedistill.export.quant import get_scheme
    from edgedistill.tasks.classification_parity import check_parity, thresholds_for

    assert thresholds_for(get_scheme("fp32")) == {"min_top1_agreement": 0.99, "max_accuracy_drop": 0.005}
    assert thresholds_for(get_scheme("int8-dynamic"))["min_top1_agreement"] == pytest.approx(0.97)
    ref = np.tile([[2.0, -1.0]], (40, 1))
    labels = np.zeros(40, dtype=np.int64)
    one = ref.copy()
    one[0] = [-1.0, 2.0]  # one flipped answer of 40: 2.5 points, the resolution of the sample
    rep = check_parity(ref, one, get_scheme("int8-dynamic"), rows=np.arange(40), labels=labels)
    assert rep.accuracy_drop == pytest.approx(0.025) and rep.top1_agreement == pytest.approx(0.975) and rep.passed
    tie = one.copy()
    tie[5:9] = [[0.01, 0.0]] * 4  # near-ties of the fp32 student (margin < 0.1) ...
    tied_ref = ref.copy()
    tied_ref[5:9] = [[0.0, 0.01]] * 4  # ... flipped by the export: not held against it
    rep = check_parity(tied_ref, tie, get_scheme("int8-dynamic"))
    assert rep.top1_agreement == pytest.approx(35 / 40) and rep.decided_sentences == 36 and rep.passed
    two = one.copy()
    two[1] = [-1.0, 2.0]
    rep = check_parity(ref, two, get_scheme("int8-dynamic"), rows=np.arange(40), labels=labels)
    assert not rep.passed and any("top-1 agreement" in f for f in rep.failures)
    assert any("accuracy drop 0.0500" in f for f in rep.failures)
    bad = ref.copy()
    bad[3] = np.nan
    assert "NaN" in check_parity(ref, bad, get_scheme("fp32")).failures[0]


@pytest.fixture(scope="module")
def exits_run(tmp_path_factory, tiny_teacher):
    tmp = tmp_path_factory.mktemp("exits")
    data = write_jsonl(tmp / "ints.jsonl", synthetic_rows(200))
    teacher = classifier_teacher(tiny_teacher, tmp / "teacher")
    recipe = tiny_recipe(tmp, teacher, data, student={"layers": [0, 2, 3], "intermediate_size": 32},
                         distill={"strategy": "self_layerwise", "max_steps": 10, "eval_every": 10,
                                  "learning_rate": 3e-3, "losses": {"kd": 1.0, "hard_ce": 0.5}})
    api.distill(recipe, tmp / "run")
    return recipe, tmp / "run"


@pytest.mark.parametrize("quant", ["fp32", "et-fp32"])
def test_early_exit_student_ships_its_exits(exits_run, quant, capsys):
    import torch

    from edgedistill.distill.strategy_exits import exit_logits, load_exits
    from edgedistill.models.classifier import load_classifier

    if quant.startswith("et-"):
        pytest.importorskip("executorch")
    recipe, out = exits_run
    (bundle,) = api.export(recipe, out, quant=quant, targets=["watch"])
    m = _manifest(bundle)
    assert m["early_exits"]["layers"] == [0, 1] and m["early_exits"]["outputs"] == ["exit_0_logits", "exit_1_logits"]
    assert [o["name"] for o in m["outputs"]] == ["exit_0_logits", "exit_1_logits", "logits"]
    texts = ["the movie was great and wonderful", "a dull and boring plot", "this film"]
    # every exit's logits match the PyTorch student's exits
    from edgedistill.runtime import Bundle

    b = Bundle.open(bundle, threads=1)
    got = b.run(b.tokenizer(texts[:1]))
    model, tok = load_classifier(out / "student")
    with torch.inference_mode():
        ref = exit_logits(model, load_exits(out / "student"), **tok(texts[:1], return_tensors="pt",
                                                                         padding="max_length" if quant.startswith("et")
                                                                         else False, max_length=32))
    for name, key in (("exit_0_logits", "0"), ("exit_1_logits", "1"), ("logits", "final")):
        assert np.allclose(got[name], ref[key].numpy(), atol=1e-3), name
    # threshold 0: the first exit answers every text; threshold 1: the final head (no exit is that sure)
    first = api.predict(bundle, texts, exit_threshold=0.0)
    assert [r["exit"] for r in first] == [0, 0, 0]
    z = got["exit_0_logits"][0]
    assert first[0]["score"] == pytest.approx(float(np.exp(z.max()) / np.exp(z).sum()), abs=1e-3)
    if quant == "fp32":  # ONNX bundles also ship the student cut at its exits: stopping early runs fewer blocks
        assert m["early_exits"]["models"] == {"0": "exit_0.onnx", "1": "exit_1.onnx"}
        assert m["early_exits"]["rest"] == "exit_rest.onnx"
        assert set(m["files"]) >= {"exit_0.onnx", "exit_1.onnx", "exit_rest.onnx"}
        assert m["early_exits"]["graph_top1_agreement"] == {"0": 1.0, "1": 1.0, "rest": 1.0}
        # every segment's attention is fused like the full graph's: an unfused block costs ~25% more
        chain = json.loads((out / "export" / "student-exits" / "chain.json").read_text())
        assert chain["attention_fused"] == {"0": True, "1": True, "rest": True}
        from edgedistill.runtime import Bundle as B

        assert list(B.open(bundle)._exit_runs) == [0, 1, "rest"]
        p0 = np.sort([float(np.exp(z).max() / np.exp(z).sum())
                      for z in b.run(b.tokenizer(texts))["exit_0_logits"]])
        split = float(p0[0] + p0[1]) / 2  # two texts stop at exit 0, the other goes on down the chain
        for th in (split, 0.7, 1.0):  # the chain of segments and the one graph agree at every threshold
            mid = api.predict(bundle, texts, exit_threshold=th)
            b._exit_runs = {}  # the same bundle answering from its one graph's exit outputs
            one = b.predict(texts, exit_threshold=th)
            assert [(x["label"], x["exit"]) for x in mid] == [(y["label"], y["exit"]) for y in one]
            assert np.allclose([x["score"] for x in mid], [y["score"] for y in one], atol=1e-4)
        # a segment consumes only the hidden states of the texts still undecided: mixed exits in one batch
        mixed = api.predict(bundle, texts * 3, exit_threshold=split)
        assert {x["exit"] for x in mixed} > {0}
        assert [x["label"] for x in mixed] == [x["label"] for x in api.predict(bundle, texts, exit_threshold=split)] * 3
    else:
        assert "models" not in m["early_exits"]
    last = api.predict(bundle, texts, exit_threshold=1.0)
    assert [r["exit"] for r in last] == ["final"] * 3
    assert [r["label"] for r in last] == [r["label"] for r in api.predict(bundle, texts)]
    assert "exit" not in api.predict(bundle, texts)[0]
    assert main(["predict", "--bundle", str(bundle), "--exit-threshold", "0", texts[0]]) == 0
    assert capsys.readouterr().out.rstrip().endswith("(exit 0)")
    assert main(["predict", "--bundle", str(bundle), "--exit-threshold", "1.5", texts[0]]) == 2


def test_bench_of_an_early_exit_run_reports_accuracy_per_threshold(exits_run):
    recipe, out = exits_run
    text = recipe.read_text().replace("[bench]\n", '[bench]\nmodels = ["teacher-pytorch", "student-onnx-int8"]\n')
    recipe.write_text(text)
    api.export(recipe, out, targets=["phone"])
    rep = api.bench(recipe, out, target="phone")
    e = rep["early_exits"]
    assert e["layers"] == [0, 1] and e["thresholds"][0]["threshold"] is None
    final = e["thresholds"][0]
    assert final["exit_share"] == {"final": 1.0}
    assert final["accuracy"] == pytest.approx(
        next(m for m in rep["models"] if m["name"] == "student-onnx-int8")["quality"]["accuracy"])
    low = e["thresholds"][1]
    assert low["threshold"] == 0.5 and low["exit_share"].get("0") == 1.0  # every top prob is >= 0.5 with 2 classes
    assert "## Early exits (blocks [0, 1])" in (out / "report" / "report.md").read_text()
    assert all(row["mean_ms"] > 0 for row in e["thresholds"]) and e["thresholds"][0]["speedup"] == 1.0
    assert "exit segments" in e["note"]
    # batch dependence of the exported classifier's logits (int8-dynamic: scales per call)
    q = next(m for m in rep["models"] if m["name"] == "student-onnx-int8")["quality"]
    assert q["batch_dependence"] >= 0 and "batch_dependence" not in rep["models"][0]["quality"]


def test_classifier_benchmark_script_runs_as_a_script():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "classifier.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "--quick" in out.stdout and "accuracy_retention" in out.stdout


def test_the_early_exit_threshold_keeps_a_standard_error_of_margin():
    bench = load_benchmark("classifier", "classifier_bench")
    rows = [{"threshold": 0.85, "loss_vs_full": 0.009, "loss_se": 0.004, "mean_ms": 1.0},  # within 1 pt, not 1 SE up
            {"threshold": 0.9, "loss_vs_full": 0.005, "loss_se": 0.004, "mean_ms": 1.2},
            {"threshold": 0.95, "loss_vs_full": 0.001, "loss_se": 0.002, "mean_ms": 1.4}]
    assert bench.choose_threshold(rows) == 0.9
    assert bench.choose_threshold([{**r, "loss_se": 0.02} for r in rows]) is None


def test_exits_only_merge_replaces_one_task_and_keeps_the_others_provenance(tmp_path, monkeypatch):
    bench = load_benchmark("classifier", "classifier_bench")

    def block(th, rows):
        row = {"threshold": th, "accuracy": 0.8, "mean_ms": 1.0, "loss_vs_full": 0.005, "loss_se": 0.003,
               "exit_share": {"0": 1.0}}
        return {"texts": 10, "student_layers": [0, 1], "chosen_on": "validation",
                "validation": {"texts": 10, "rows": [row], "threshold": th}, "full": {**row, "threshold": None},
                "thresholds": [row], "chosen": row, "within_1_point_on_test": True, "speedup": 1.5, "rows": rows,
                "graph": "g"}

    old_stamp = {"created": "2026-01-01T00:00:00Z", "seconds": 1.0, "note": "", "command": "python old"}
    task = {"rows": 100, "classes": 2, "teacher": {"val_accuracy": 0.9, "test_accuracy": 0.9}, "best_method": "kd",
            "methods": {"kd": {"best_val_accuracy": 0.8, "test_accuracy": 0.8}}, "schemes": {},
            "bench": {"size_ratio": 2.0, "latency_p50_speedup": 3.0, "quality_retention": 0.9}}
    res = {"quick": False, "host": "h", "seconds": 60.0, "tasks": {
               "a": {**task, "early_exit": {**block(0.9, 100), "measured": old_stamp}},
               "b": {**task, "early_exit": {**block(0.8, 100), "measured": old_stamp}}},
           "settings": {"rows_per_task": 100, "teacher_epochs": 4, "kd_steps": 600, "max_length": 64},
           "headline": {k: 1 for k in ("size_ratio", "latency_p50_speedup", "accuracy_retention", "schemes_ok",
                                       "predict_labels_ok")} | {"early_exit": {}}}
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(res))
    monkeypatch.setattr("sys.argv", ["classifier.py", "--exits-only", "--tasks", "b"])
    assert bench._merge_exits(path, {"b": {"early_exit": block(0.95, 500)}}, 2.0, "more rows") == 0
    got = json.loads(path.read_text())
    assert got["tasks"]["a"]["early_exit"]["measured"] == old_stamp
    assert got["tasks"]["b"]["early_exit"]["measured"]["command"].endswith("--exits-only --tasks b")
    assert got["headline"]["early_exit"]["b"]["threshold"] == 0.95 and got["headline"]["early_exit"]["b"]["rows"] == 500
    md = path.with_suffix(".md").read_text()
    assert "10 test texts of 500 rows (its own teacher" in md and "by `python old`" in md
