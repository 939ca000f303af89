"""The torch-free runtime on bundles of the real student (shares the e2e run from conftest.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.e2e


def test_int8_static_bundle_of_the_real_student_runs_in_the_runtime(run, tmp_path):
    """Static int8 (calibrated on training sentences) on the real student, zipped, then opened by the
    torch-free runtime and compared with the PyTorch student."""
    from transformers import AutoModel, AutoTokenizer

    from edgedistill.models.encode import embed_torch
    from edgedistill.runtime import Bundle

    run_dir, _ = run
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", EDGEDISTILL_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "export", str(run_dir.parent / "recipe.toml"),
                           "-o", str(tmp_path), "--student", str(run_dir / "student"), "--target", "watch",
                           "--quant", "int8-static", "--zip"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "bundles" / "watch" / "manifest.json").read_text())
    assert m["quantization"]["scheme"] == "int8-static" and m["parity"]["passed"]
    assert m["files"]["model.onnx"]["bytes"] < 20e6 and m["tokenizer"]["file"] == "tokenizer.json"
    texts = ["A gorgeous, witty, seductive movie.", "The plot is dull and the acting is worse.",
             "Battery life is great but the screen scratches way too easily."]
    got = Bundle.open(tmp_path / "bundles" / "watch.zip", threads=1).embed(texts)
    student = run_dir / "student"
    ref = embed_torch(AutoModel.from_pretrained(student), AutoTokenizer.from_pretrained(student), texts, 128)
    assert np.min(np.sum(got * ref, axis=1)) > 0.98
