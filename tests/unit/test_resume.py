"""Checkpoint and exact resume: a run killed after a checkpoint and re-run with the same command
ends with the same student, history and per-step log as a run that was never interrupted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl
from safetensors.torch import load_file

from edgedistill.cli import main
from edgedistill.models.classifier import classifier_from_encoder
from edgedistill.models.loading import load_encoder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clf_teacher(tiny_teacher, tmp_path_factory):
    enc, tok = load_encoder(tiny_teacher)
    torch.manual_seed(0)
    model = classifier_from_encoder(enc)
    with torch.no_grad():
        model.classifier.weight.mul_(50)
    folder = tmp_path_factory.mktemp("clf") / "teacher"
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("d") / "rows.jsonl", synthetic_rows(120))


def recipe(tmp_path, teacher, data, **distill):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return tiny_recipe(tmp_path, teacher, data, distill={
        "strategy": "classification", "max_steps": 10, "eval_every": 5, "checkpoint_every": 5, "batch_size": 8,
        "learning_rate": 3e-3, "threads": 1, "eval_sentences": 12, **distill})


def _killed_run(path: Path, out: Path, after_steps: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEDISTILL_TEST_EXIT_AFTER_STEPS=str(after_steps),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "distill", str(path), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 75, proc.stderr[-2000:]


CASES = {
    # born-again: killed in generation 2 (steps 1-10 are generation 1), after its step-5 checkpoint
    "born_again": ({"losses": {"kd": 1.0, "hard_ce": 0.5}, "generations": 2}, 17),
    # EMA pseudo-teacher: the EMA weights travel in the checkpoint
    "ema_self": ({"strategy": "ema_self", "losses": {"kd": 1.0, "hard_ce": 1.0}, "ema_decay": 0.8}, 7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, clf_teacher, data, case, capsys):
    distill, kill_after = CASES[case]
    ref = recipe(tmp_path / "ref", clf_teacher, data, **distill)
    assert main(["distill", str(ref), "-o", str(tmp_path / "ref" / "out")]) == 0
    capsys.readouterr()

    path = recipe(tmp_path / "kill", clf_teacher, data, **distill)
    out = tmp_path / "kill" / "out"
    _killed_run(path, out, kill_after)
    assert (out / "checkpoints" / "recipe.json").exists() and not (out / "student").exists()
    assert main(["distill", str(path), "-o", str(out)]) == 0
    assert "resuming from step 5" in capsys.readouterr().err

    a, b = load_file(tmp_path / "ref" / "out" / "student" / "model.safetensors"), load_file(
        out / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    ra = json.loads((tmp_path / "ref" / "out" / "student" / "distill.json").read_text())
    rb = json.loads((out / "student" / "distill.json").read_text())
    assert ra["losses"] == rb["losses"] and ra["evals"] == rb["evals"]
    assert ra["metrics"]["test_accuracy"] == rb["metrics"]["test_accuracy"]
    assert not (out / "checkpoints").exists()  # removed once the student is written
    # one log line per optimizer step, none doubled by the replayed steps
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    gens = distill.get("generations", 1)
    assert len(rows) == 10 * gens and [r["step"] for r in rows] == list(range(1, 11)) * gens
    ref_rows = [json.loads(x) for x in (tmp_path / "ref" / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref_rows], abs=1e-6)
    assert {"step", "lr", "loss", "kd", "hard_ce", "seconds"} <= set(rows[0])


def test_checkpoints_of_another_recipe_are_refused(tmp_path, clf_teacher, data, capsys):
    path = recipe(tmp_path, clf_teacher, data, losses={"hard_ce": 1.0})
    ck = tmp_path / "out" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "recipe.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("edgedistill: error")]
    assert len(errors) == 1 and "holds checkpoints of a different recipe or teacher" in errors[0]
    assert errors[0].endswith(f"delete {ck} to start fresh")


def test_checkpoint_every_zero_writes_none(tmp_path, clf_teacher, data):
    path = recipe(tmp_path, clf_teacher, data, losses={"hard_ce": 1.0}, checkpoint_every=0, max_steps=6)
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEDISTILL_TEST_EXIT_AFTER_STEPS="6", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "distill", str(path), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 75
    assert not (tmp_path / "out" / "checkpoints").exists()
