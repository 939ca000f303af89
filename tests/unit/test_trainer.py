import numpy as np
import pytest
import torch
from conftest import synthetic_rows

from edgedistill.distill.losses import LOSSES, LossEntry
from edgedistill.distill.strategies import EmbeddingStrategy, resolve_layer_map
from edgedistill.distill.teacher_cache import teacher_targets
from edgedistill.distill.trainer import train
from edgedistill.errors import RecipeError, TrainingError
from edgedistill.models.loading import load_encoder
from edgedistill.models.student import build_student, plan_student
from edgedistill.models.teacher import TeacherRef
from edgedistill.recipe import DistillSpec, StudentSpec


@pytest.fixture(scope="module")
def setup(tiny_teacher):
    model, tok = load_encoder(tiny_teacher)
    ref = TeacherRef(folder=tiny_teacher, weights=tiny_teacher / "model.safetensors", sha256="c" * 64, source="t")
    texts = [r["text"] for r in synthetic_rows(160)]
    return model, tok, ref, texts[:128], texts[128:]


def run(setup, **spec_kw):
    model, tok, ref, train_texts, val_texts = setup
    plan = plan_student(StudentSpec(layers=[0, 3], intermediate_size=32), model.config)
    student = build_student(model, tok, plan, train_texts[:32], 32, "importance")
    spec = DistillSpec(**{"max_steps": 40, "batch_size": 16, "eval_every": 10, "learning_rate": 2e-3, **spec_kw})
    strategy = EmbeddingStrategy(spec.losses, resolve_layer_map(spec.layer_map, plan.layers, 4), "mean", True)
    targets = teacher_targets(model, tok, ref, train_texts, 32, "mean", True, layers=strategy.teacher_hidden_indices())
    val = np.asarray(teacher_targets(model, tok, ref, val_texts, 32, "mean", True).embeddings)
    return student, train(student, tok, strategy, train_texts, targets, val_texts, val, spec, 32, "mean", True)


def test_training_improves_agreement_and_keeps_the_best_checkpoint(setup):
    student, res = run(setup)
    assert res.evals[0]["step"] == 0
    # random tiny teachers embed everything close together, so compare distances, not cosines
    assert 1 - res.best_val_cosine < 0.5 * (1 - res.evals[0]["val_cosine"])
    assert res.best_val_cosine == max(e["val_cosine"] for e in res.evals)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert {"cosine", "hidden_mse", "loss", "lr"} <= set(res.history[0])
    for k, v in student.state_dict().items():
        assert torch.equal(v, res.best_state[k])


def test_training_is_reproducible(setup):
    _, a = run(setup, max_steps=10)
    _, b = run(setup, max_steps=10)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_word_embeddings_stay_frozen_by_default(setup):
    model = setup[0]
    student, res = run(setup)
    assert res.best_step > 0  # trained weights were kept, yet the word table is the teacher's
    assert torch.equal(student.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)
    assert not student.embeddings.word_embeddings.weight.requires_grad
    student2, _ = run(setup, max_steps=10, freeze_word_embeddings=False)
    assert student2.embeddings.word_embeddings.weight.requires_grad


def test_nan_loss_stops_with_a_clear_error(setup, monkeypatch):
    monkeypatch.setitem(LOSSES, "always_nan", LossEntry(lambda s, t: (s.embedding * float("nan")).sum(),
                                                        frozenset({"embedding"}), "test"))
    with pytest.raises(TrainingError) as e:
        run(setup, losses={"cosine": 1.0, "always_nan": 1.0})
    assert "loss is nan at step 1" in str(e.value) and "learning_rate" in str(e.value)


def test_strategy_validation():
    with pytest.raises(RecipeError, match="every weight is 0"):
        EmbeddingStrategy({"cosine": 0.0}, {0: 0}, "mean", True)
    with pytest.raises(RecipeError, match="teacher layer 7 does not exist"):
        resolve_layer_map({"0": 7}, [0, 3], 4)
    with pytest.raises(RecipeError, match="the student has layers 0..1"):
        resolve_layer_map({"5": 0}, [0, 3], 4)
    assert resolve_layer_map({}, [1, 3], 4) == {0: 1, 1: 3}
