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
from edgedistill.models.loading import load_encoder

REPO = Path(__file__).resolve().parents[2]


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
    # deep mutual learning: both peers are in the checkpointed module
    "mutual": ({"strategy": "mutual", "losses": {"kd": 1.0, "hard_ce": 1.0}}, 7),
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
    path = recipe(tmp_path, clf_teacher, data, losses={"hard_ce": 1.0}, max_steps=4)
    ck = tmp_path / "out" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "recipe.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    # a fingerprint alone (a run that failed before its first checkpoint) is no reason to refuse
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    (ck / "gen-1").mkdir(parents=True)
    (ck / "gen-1" / "latest.json").write_text(json.dumps({"step": 5, "folder": "step-000005"}))
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


def test_embedding_loop_resumes_exactly(tiny_teacher, tmp_path, monkeypatch):
    """The embedding stage shares the loop: an interrupted run continues to the same weights."""
    import numpy as np

    from edgedistill.distill import loop
    from edgedistill.distill.checkpoint import Checkpoints
    from edgedistill.distill.strategies import EmbeddingStrategy, resolve_layer_map
    from edgedistill.distill.teacher_cache import teacher_targets
    from edgedistill.distill.trainer import train
    from edgedistill.models.student import build_student, plan_student
    from edgedistill.models.teacher import TeacherRef
    from edgedistill.recipe import DistillSpec, StudentSpec

    model, tok = load_encoder(tiny_teacher)
    ref = TeacherRef(folder=tiny_teacher, weights=tiny_teacher / "model.safetensors", sha256="c" * 64, source="t")
    texts = [r["text"] for r in synthetic_rows(96)]
    spec = DistillSpec(max_steps=10, batch_size=16, eval_every=5, learning_rate=2e-3)
    plan = plan_student(StudentSpec(layers=[0, 3], intermediate_size=32), model.config)
    strategy = EmbeddingStrategy(spec.losses, resolve_layer_map({}, plan.layers, 4), "mean", True)
    targets = teacher_targets(model, tok, ref, texts[:80], 32, "mean", True, layers=strategy.teacher_hidden_indices())
    val = np.asarray(teacher_targets(model, tok, ref, texts[80:], 32, "mean", True).embeddings)

    def fit(store=None):
        student = build_student(model, tok, plan, texts[:32], 32, "importance")
        res = train(student, tok, strategy, texts[:80], targets, texts[80:], val, spec, 32, "mean", True, store=store)
        return student, res

    ref_student, ref_res = fit()
    store = Checkpoints(tmp_path / "ck", 5, "f").gen(1)

    def die():
        loop._steps_done += 1
        if loop._steps_done == 8:
            raise KeyboardInterrupt  # stands in for a kill after the step-5 checkpoint

    monkeypatch.setattr(loop, "_steps_done", 0)
    monkeypatch.setattr(loop, "_maybe_die", die)
    with pytest.raises(KeyboardInterrupt):
        fit(store)
    assert json.loads((tmp_path / "ck" / "gen-1" / "latest.json").read_text())["step"] == 5
    student, res = fit(store)
    assert res.history == ref_res.history and res.evals == ref_res.evals and res.best_step == ref_res.best_step
    for (k, a), b in zip(ref_student.state_dict().items(), student.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k
