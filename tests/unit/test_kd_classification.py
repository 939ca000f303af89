"""Classification distillation: every catalogue loss trains a tiny student, the logits cache,
schedules, born-again generations, and the bad inputs (shape mismatch, wrong strategy, NaN)."""

import json

import numpy as np
import pytest
import torch
from conftest import classification_recipe
from transformers import AutoModelForSequenceClassification, BertConfig

from edgedistill import api
from edgedistill.cli import main
from edgedistill.distill.classify_stage import ClassificationRun
from edgedistill.distill.losses import LOSSES, LossEntry
from edgedistill.distill.strategies import EmbeddingStrategy
from edgedistill.distill.strategy_cls import ClassificationStrategy
from edgedistill.distill.teacher_cache import teacher_logits
from edgedistill.errors import RecipeError
from edgedistill.models.classifier import load_classifier
from edgedistill.models.teacher import TeacherRef
from edgedistill.recipe import DistillSpec

CATALOGUE = ["kd", "reverse_kl", "jsd", "hard_ce", "label_smoothing", "sorted_prob", "fitnets", "hidden_mse",
             "attention_kl", "value_relation"]


recipe = classification_recipe


@pytest.fixture(scope="module")
def run(clf_teacher, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r")
    ws = api._workspace(recipe(tmp, clf_teacher, data), tmp / "out")
    return ClassificationRun(ws)


@pytest.mark.parametrize("loss", CATALOGUE)
def test_each_loss_trains_the_student(run, loss):
    spec = run.ws.recipe.distill.replace(losses={loss: 1.0})
    _, _, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1][loss] < hist[0][loss], (loss, hist[0], hist[-1])


def test_mixed_losses_follow_the_weight_schedule(run):
    spec = run.ws.recipe.distill.replace(losses={"hard_ce": 1.0, "kd": 0.0},
                                         final_weights={"hard_ce": 0.0, "kd": 1.0})
    s = run.strategy(spec)
    assert s.weights_at(0.0) == {"hard_ce": 1.0, "kd": 0.0}
    assert s.weights_at(0.25) == pytest.approx({"hard_ce": 0.75, "kd": 0.25})
    assert s.weights_at(1.0) == {"hard_ce": 0.0, "kd": 1.0}
    assert s.needs_logits  # kd starts at weight 0 but is scheduled in, so the teacher's logits are cached


def test_logits_cache_hits_and_never_goes_stale(clf_teacher, monkeypatch):
    model, tok = load_classifier(clf_teacher)
    ref = TeacherRef(folder=clf_teacher, weights=clf_teacher / "model.safetensors", sha256="d" * 64, source="t")
    texts = ["the movie was great", "a dull film", "so dull and painful"]
    first = np.array(teacher_logits(model, tok, ref, texts, 32))
    with torch.no_grad():
        direct = model(**tok(texts[1:2], return_tensors="pt")).logits.numpy()[0]
    assert np.allclose(first[1], direct, atol=1e-5)
    calls = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert np.array_equal(np.asarray(teacher_logits(model, tok, ref, texts, 32)), first) and not calls
    # a different teacher (weights hash) or different texts compute afresh
    other = TeacherRef(folder=clf_teacher, weights=ref.weights, sha256="e" * 64, source="t")
    teacher_logits(model, tok, other, texts, 32)
    assert len(calls) == 1
    teacher_logits(model, tok, ref, texts[:2], 32)
    assert len(calls) == 2


def test_born_again_generations_via_the_cli(tmp_path, clf_teacher, data, capsys):
    path = recipe(tmp_path, clf_teacher, data, losses={"kd": 1.0, "hard_ce": 0.5}, generations=2, max_steps=20)
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    student = tmp_path / "out" / "student"
    rec = json.loads((student / "distill.json").read_text())
    assert [g["generation"] for g in rec["generations"]] == [1, 2]
    assert rec["task"] == "classification" and 0 <= rec["metrics"]["test_accuracy"] <= 1
    model = AutoModelForSequenceClassification.from_pretrained(student)
    assert model.config.num_hidden_layers == 2 and model.config.id2label[1] == "positive"


def _cfg(hidden, heads):
    return BertConfig(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=2, intermediate_size=32)


def test_width_mismatch_names_the_layers_and_the_fix():
    spec = DistillSpec(strategy="classification", losses={"hidden_mse": 1.0})
    with pytest.raises(RecipeError, match=r"student width 32 with teacher width 64 at layers student 1 -> "
                                          r"teacher 3; use 'fitnets'"):
        ClassificationStrategy(spec, {1: 3}, _cfg(32, 4), _cfg(64, 4))
    fit = ClassificationStrategy(DistillSpec(strategy="classification", losses={"fitnets": 1.0}), {0: 1, 1: 3}, _cfg(32, 4), _cfg(64, 4))
    assert [p.shape for p in fit.extra_parameters()][:2] == [torch.Size([64, 32]), torch.Size([64])]
    assert fit._project(1, torch.zeros(1, 2, 32)).shape == (1, 2, 64)
    with pytest.raises(RecipeError, match=r"student layer 1 \(4 heads x 8\) with teacher layer 3 \(8 heads x 8\)"):
        ClassificationStrategy(DistillSpec(strategy="classification", losses={"attention_kl": 1.0}), {0: 0, 1: 3}, _cfg(32, 4), _cfg(64, 8))


def test_strategy_and_loss_must_fit():
    with pytest.raises(RecipeError, match="loss 'kd' needs logits.*use strategy = 'classification'"):
        EmbeddingStrategy({"kd": 1.0}, {0: 0}, "mean", True)
    with pytest.raises(RecipeError, match="loss 'cosine' needs embedding.*use strategy = 'embedding'"):
        ClassificationStrategy(DistillSpec(strategy="classification", losses={"cosine": 1.0}), {0: 0}, _cfg(32, 4), _cfg(32, 4))
    from edgedistill.distill.strategies import get_strategy

    with pytest.raises(RecipeError, match="unknown strategy 'mutal'.*classification, ema_self, embedding, mutual"):
        get_strategy("mutal")


def test_nan_loss_stops_with_step_and_terms_and_keeps_the_last_good_checkpoint(tmp_path, clf_teacher, data,
                                                                              monkeypatch, capsys):
    state = {"n": 0}

    def late_nan(s, t):
        state["n"] += 1  # finite for 15 steps, then NaN
        return s.logits.sum() * (float("nan") if state["n"] > 15 else 0.0)

    monkeypatch.setitem(LOSSES, "late_nan", LossEntry(late_nan, frozenset({"labels"}), "test"))
    path = recipe(tmp_path, clf_teacher, data, losses={"hard_ce": 1.0, "late_nan": 1.0}, eval_every=5)
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "loss is nan at step 16" in err and "late_nan=nan" in err and "hard_ce=" in err
    assert "last good checkpoint (step" in err
    kept = tmp_path / "out" / "student.last-good"
    assert AutoModelForSequenceClassification.from_pretrained(kept).config.num_hidden_layers == 2
    assert not (tmp_path / "out" / "student").exists()


def test_every_kd_example_recipe_loads_and_names_registered_losses():
    from pathlib import Path

    from edgedistill.distill.losses import get_loss
    from edgedistill.recipe import load_recipe

    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "kd").glob("*.toml"))
    assert len(examples) >= 9
    docs = (Path(__file__).resolve().parents[2] / "docs" / "kd-methods.md").read_text()
    for path in examples:
        r = load_recipe(path)
        assert r.distill.strategy in ("classification", "ema_self", "mutual", "self_layerwise", "online_ensemble",
                                      "augment_self", "augment_kd", "stagewise")
        assert r.teacher.path or r.teacher.package
        for name in r.distill.losses:
            get_loss(name)
        assert f"examples/kd/{path.name}" in docs, f"{path.name} has no when-to-use paragraph"


def test_ema_pseudo_teacher_tracks_the_student(run):
    spec = run.ws.recipe.distill.replace(strategy="ema_self", losses={"hard_ce": 1.0, "kd": 1.0}, ema_decay=0.9)
    student, strategy, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1]["hard_ce"] < hist[0]["hard_ce"] and hist[-1]["kd"] > 0
    key = "bert.encoder.layer.1.output.dense.weight"
    ema, init, final = strategy.ema.state_dict()[key], run.initial_student.state_dict()[key], student.state_dict()[key]
    assert not torch.equal(ema, init) and not torch.equal(ema, final)  # it moved, lagging behind the student
    with pytest.raises(RecipeError, match="loss 'fitnets' needs hidden, which strategy 'ema_self' does not provide"):
        run.strategy(DistillSpec(strategy="ema_self", losses={"fitnets": 1.0}))


def test_mutual_learning_trains_two_different_peers(run):
    from edgedistill.distill.strategy_self import PeerPair

    spec = run.ws.recipe.distill.replace(strategy="mutual", losses={"hard_ce": 1.0, "kd": 1.0})
    strategy = run.strategy(spec)
    import copy

    pair = strategy.prepare_student(copy.deepcopy(run.initial_student))
    assert isinstance(pair, PeerPair)
    key = "bert.encoder.layer.1.output.dense.weight"
    a, b = (p.state_dict()[key] for p in pair.peers)
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.5)  # close, not identical starts
    student, _, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1]["hard_ce"] < hist[0]["hard_ce"] and hist[-1]["kd"] > 0
    assert not hasattr(student, "peers")  # peer 0 is handed over
    assert not student.bert.embeddings.word_embeddings.weight.requires_grad


def test_export_and_bench_of_a_classification_recipe_before_distill_say_what_is_missing(tmp_path, clf_teacher, data,
                                                                                          capsys):
    # classifier students are exported and benchmarked (tests/unit/test_classifier_export.py); before a
    # student exists each stage says what to run first, in one line
    path = recipe(tmp_path, clf_teacher, data, losses={"kd": 1.0})
    for cmd, msg in (("export", "no student at"), ("bench", "no bundle for target 'phone'")):
        assert main([cmd, str(path), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1
