"""Progressive KD: curriculum, stage-wise, temperature annealing, the teacher-assistant chain, and the
default layer maps (modes, printing, bad maps)."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import classification_recipe, tiny_recipe
from conftest import distill_spec as spec_of

from edgedistill import api
from edgedistill.cli import main
from edgedistill.distill import assistants as chain_mod
from edgedistill.distill.classify_stage import ClassificationRun
from edgedistill.distill.cls_trainer import _features
from edgedistill.distill.curriculum import curriculum_batches, difficulty, easy_first, pool_size
from edgedistill.distill.losses import LOSSES, LossEntry
from edgedistill.distill.strategies import default_layer_map, resolve_layer_map
from edgedistill.distill.trainer import optimizer
from edgedistill.errors import RecipeError
from edgedistill.recipe import DistillSpec

recipe = classification_recipe


@pytest.fixture(scope="module")
def run(clf_teacher, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r")
    return ClassificationRun(api._workspace(recipe(tmp, clf_teacher, data), tmp / "out"))


# -- curriculum ---------------------------------------------------------------------------------------------

LOGITS = np.array([[5.0, 0.0], [0.0, 0.0], [0.0, 3.0], [-2.0, 2.0]])
LABELS = np.array([0, 0, 0, 1])


def test_curriculum_orders_by_teacher_confidence_and_loss():
    # top-class probabilities: sigmoid(5)=.993, .5, sigmoid(3)=.953, sigmoid(4)=.982
    assert difficulty(LOGITS, LABELS, "teacher_confidence") == pytest.approx([1 - 0.99331, 0.5, 1 - 0.95257,
                                                                              1 - 0.98201], abs=1e-4)
    assert easy_first(LOGITS, LABELS, "teacher_confidence").tolist() == [0, 3, 2, 1]
    # teacher CE on the gold label: row 2 is confidently wrong, so it comes last
    assert difficulty(LOGITS, LABELS, "teacher_loss") == pytest.approx([0.00672, 0.69315, 3.04859, 0.01815],
                                                                      abs=1e-4)
    assert easy_first(LOGITS, LABELS, "teacher_loss").tolist() == [0, 3, 1, 2]


def test_curriculum_pool_grows_from_start_to_all():
    assert [pool_size(f, 100, 0.25, 0.5) for f in (0.0, 0.25, 0.5, 1.0)] == [25, 63, 100, 100]
    assert pool_size(0.0, 100, 0.01, 0.5, batch_size=16) == 16  # never smaller than a batch
    order = np.arange(100)[::-1]  # "easiest" = highest index
    stream = curriculum_batches(order, 8, 11, 0.25, 0.5, np.random.default_rng(0))
    first = next(stream)
    assert len(first) == 8 and set(first) <= set(range(75, 100))
    seen = set()
    for _ in range(10):
        seen |= set(next(stream).tolist())
    assert min(seen) < 75  # the pool has grown beyond the easiest quarter


def test_curriculum_training_reduces_the_loss(run):
    spec = spec_of(run, losses={"kd": 1.0, "hard_ce": 1.0}, curriculum="teacher_loss", curriculum_start=0.3)
    _, _, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1]["loss"] < hist[0]["loss"]


# -- stage-wise ---------------------------------------------------------------------------------------------

def _grads(student):
    blocks = student.base_model.encoder.layer
    has = lambda mod: any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())  # noqa: E731
    return [has(b) for b in blocks] + [has(student.classifier)]


def _fixed_batch(run, strategy, cache):
    idx = np.arange(16)
    feats = _features(run.enc, idx, run.pad_id)
    teacher = strategy.teacher_batch(cache, idx, feats["input_ids"].shape[1], feats["attention_mask"])
    return feats, teacher, torch.as_tensor(run.train_labels[idx])


def test_stagewise_freezes_deeper_blocks_then_trains_everything(run):
    spec = spec_of(run, strategy="stagewise", losses={"kd": 1.0, "hard_ce": 1.0})
    strategy = run.strategy(spec)
    assert strategy.stages == [0, 1] and strategy.n_phases == 3
    assert [strategy.phase(f) for f in (0.0, 0.3, 0.34, 0.66, 0.67, 1.0)] == [0, 0, 1, 1, 2, 2]
    cache = run.cache(strategy)
    feats, teacher, y = _fixed_batch(run, strategy, cache)
    student = copy.deepcopy(run.initial_student)
    for frac, want in ((0.0, [True, False, False]), (0.5, [True, True, False]), (0.9, [True, True, True])):
        student.zero_grad(set_to_none=True)
        strategy.before_step(student, frac)
        loss, parts = strategy.loss(student, feats, teacher, y, frac)
        loss.backward()
        assert _grads(student) == want, frac
        assert not student.classifier.weight.requires_grad or frac > 0.66
    assert set(parts) == {"kd", "hard_ce"}


def test_stagewise_each_phase_reduces_its_loss(run):
    spec = spec_of(run, strategy="stagewise", losses={"kd": 1.0, "hard_ce": 1.0}, warmup_ratio=0.0)
    strategy = run.strategy(spec)
    cache = run.cache(strategy)
    feats, teacher, y = _fixed_batch(run, strategy, cache)
    student = copy.deepcopy(run.initial_student)
    torch.manual_seed(0)
    with torch.no_grad():  # block 0 is a copy of the teacher's: move it away so phase 1 has something to learn
        for p in student.base_model.encoder.layer[0].parameters():
            p.add_(torch.randn_like(p) * 0.2)
    _, opt, _ = optimizer(student, strategy.extra_parameters(), spec)
    for frac in (0.0, 1.0):
        values = []
        for _ in range(12):
            strategy.before_step(student, frac)
            loss, _ = strategy.loss(student, feats, teacher, y, frac)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            values.append(float(loss.detach()))
        assert values[-1] < values[0], (frac, values)
    _, _, gens = run.train(spec_of(run, strategy="stagewise", losses={"kd": 1.0, "hard_ce": 1.0}, max_steps=12))
    keys = set().union(*gens[0]["result"].history)
    assert {"fitnets_stage1", "kd", "hard_ce"} <= keys


# -- temperature annealing ----------------------------------------------------------------------------------

def test_temperature_anneals_linearly_and_reaches_the_losses(run, monkeypatch):
    seen = []

    def probe(s, t, temperature):
        seen.append(temperature)
        return s.logits.sum() * 0.0

    monkeypatch.setitem(LOSSES, "t_probe", LossEntry(probe, frozenset({"logits"}), "test", ("temperature",)))
    spec = spec_of(run, losses={"t_probe": 1.0}, temperature=4.0, final_temperature=1.0)
    s = run.strategy(spec)
    assert [s.temperature_at(f) for f in (0.0, 0.5, 1.0)] == [4.0, 2.5, 1.0]
    assert run.strategy(spec_of(run, losses={"kd": 1.0})).temperature_at(0.7) == 2.0  # no annealing: constant
    cache = run.cache(s)
    feats, teacher, y = _fixed_batch(run, s, cache)
    for frac in (0.0, 0.5, 1.0):
        s.loss(run.initial_student, feats, teacher, y, frac)
    assert seen == [4.0, 2.5, 1.0]


def test_temperature_annealing_training_reduces_the_loss(run):
    _, _, gens = run.train(spec_of(run, losses={"kd": 1.0, "hard_ce": 0.5}, temperature=2.0, final_temperature=1.0))
    hist = gens[0]["result"].history
    assert hist[-1]["hard_ce"] < hist[0]["hard_ce"] and hist[-1]["loss"] < hist[0]["loss"]


# -- teacher-assistant chain --------------------------------------------------------------------------------

def test_assistant_chain_passes_each_links_logits_on(run, monkeypatch):
    calls = []

    def fake_train(model, strategy, enc, labels, cache, *a, **kw):
        calls.append((model.config.num_hidden_layers, cache.logits.copy()))
        with torch.no_grad():
            model.classifier.bias.fill_(float(model.config.num_hidden_layers))  # marks the link's logits

        class R:
            best_step, best_val_accuracy, seconds = 0, 0.5, 0.0
        return R()

    monkeypatch.setattr(chain_mod, "train_classifier", fake_train)
    teacher = np.full((len(run.train_texts), 2), 7.0, dtype=np.float32)
    spec = spec_of(run, losses={"kd": 1.0}, assistants=[[0, 1, 2], [0, 2]])
    logits, links = chain_mod.train_chain(run, spec, teacher)
    assert [c[0] for c in calls] == [3, 2]
    assert np.all(calls[0][1] == 7.0)  # assistant 1 learns from the teacher
    last1 = calls[1][1]  # assistant 2 learns from assistant 1's logits
    assert not np.allclose(last1, 7.0)
    assert [link["kept_teacher_layers"] for link in links] == [[0, 1, 2], [0, 2]]
    assert all(0 <= link["test_accuracy"] <= 1 for link in links)
    assert logits.shape == teacher.shape and not np.allclose(logits, last1)  # the student learns from link 2


def test_assistant_chain_runs_from_the_cli_and_reports_each_link(tmp_path, clf_teacher, data, capsys):
    path = recipe(tmp_path, clf_teacher, data, losses={"kd": 1.0, "hard_ce": 0.5}, assistants=[[0, 1, 3]])
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    rec = json.loads((tmp_path / "out" / "student" / "distill.json").read_text())
    assert [a["kept_teacher_layers"] for a in rec["assistants"]] == [[0, 1, 3]]
    assert 0 <= rec["assistants"][0]["test_accuracy"] <= 1 and rec["losses"][-1]["loss"] < rec["losses"][0]["loss"]
    err = capsys.readouterr().err
    assert "layer map student->teacher {0->0, 1->3} (layer_map_mode = 'copied')" in err
    assert "assistant 1 (teacher layers [0, 1, 3]): test accuracy" in err
    assert "<title>Validation accuracy" in (tmp_path / "out" / "training.html").read_text()


def test_assistant_chain_bad_inputs(run):
    with pytest.raises(RecipeError, match=r"assistants\[0\]'.*teacher layer 9 does not exist"):
        chain_mod.train_chain(run, spec_of(run, losses={"kd": 1.0}, assistants=[[0, 9]]), np.zeros((1, 2)))
    with pytest.raises(RecipeError, match="loss 'fitnets' needs hidden.*passes logits only"):
        chain_mod.train_chain(run, spec_of(run, losses={"fitnets": 1.0}, assistants=[[0, 1, 2]]), np.zeros((1, 2)))
    with pytest.raises(RecipeError, match="strategy 'stagewise' needs other targets"):
        chain_mod.train_chain(run, spec_of(run, strategy="stagewise", losses={"kd": 1.0}, assistants=[[0, 1, 2]]),
                              np.zeros((1, 2)))
    with pytest.raises(RecipeError, match="r.toml: \\[distill\\] key 'curriculum': applies to strategies "
                                          "augment_kd, augment_self, classification, .* not to strategy 'embedding'"):
        DistillSpec.from_table({"curriculum": "teacher_loss"}, "r.toml: [distill]")
    with pytest.raises(RecipeError, match=r"assistants\[1\]'.*largest first"):
        DistillSpec.from_table({"strategy": "classification", "assistants": [[0, 1], [0, 1, 2]]}, "r.toml: [distill]")


# -- layer maps ---------------------------------------------------------------------------------------------

def test_layer_map_modes():
    assert default_layer_map([0, 3], 4, "copied") == {0: 0, 1: 3}
    assert default_layer_map([0, 3], 4, "uniform") == {0: 1, 1: 3}
    assert default_layer_map([0, 3], 4, "last_k") == {0: 2, 1: 3}
    assert default_layer_map([0, 1, 2], 12, "uniform") == {0: 3, 1: 7, 2: 11}
    assert resolve_layer_map({"1": 2}, [0, 3], 4, "last_k") == {1: 2}  # an explicit map wins


def test_bad_layer_map_names_the_layer_and_the_fix():
    with pytest.raises(RecipeError, match=r"'layer_map.2': student layer 2 does not exist \(the student has layers "
                                          r"0..1\); use keys 0..1"):
        resolve_layer_map({"2": 0}, [0, 3], 4)
    with pytest.raises(RecipeError, match=r"'layer_map.1': teacher layer 7 does not exist \(the teacher has layers "
                                          r"0..3\); map student layer 1 to one of those"):
        resolve_layer_map({"1": 7}, [0, 3], 4)


def test_embedding_run_prints_its_layer_map(tmp_path, tiny_teacher, data, monkeypatch, capsys):
    from edgedistill.distill import stage

    def stop(*a, **kw):
        raise RuntimeError("stop before training")

    monkeypatch.setattr(stage, "train", stop)
    path = tiny_recipe(tmp_path, tiny_teacher, data, distill={"layer_map_mode": "last_k"})
    with pytest.raises(RuntimeError, match="stop before training"):
        api.distill(path, tmp_path / "out")
    assert "layer map student->teacher {0->2, 1->3} (layer_map_mode = 'last_k')" in capsys.readouterr().err
