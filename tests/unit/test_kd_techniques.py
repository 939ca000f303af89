"""Early exits (self_layerwise), N-peer mutual / online ensemble, multi-teacher ensembles and
augmentation-based distillation: each loss against hand-computed values, and each trains a tiny student."""

import copy
import json
import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import (
    build_tiny_bert,
    classification_recipe,
    classifier_teacher,
    load_benchmark,
)
from conftest import distill_spec as spec_of
from transformers import AutoModelForSequenceClassification, BertConfig

from edgedistill import api
from edgedistill.cli import main
from edgedistill.distill.augment import AugmentSpec, augment_features, augment_row
from edgedistill.distill.classify_stage import ClassificationRun, deliverable_state
from edgedistill.distill.multi_teacher import ensemble_test_accuracy
from edgedistill.distill.strategies import get_strategy
from edgedistill.distill.strategy_ensemble import OnlineEnsembleStrategy, check_widths, combine_logits
from edgedistill.distill.strategy_exits import ExitHeads, ExitModel, LayerwiseSelfStrategy, exit_logits, load_exits
from edgedistill.distill.strategy_self import MutualStrategy
from edgedistill.distill.teacher_cache import teacher_logits
from edgedistill.errors import RecipeError
from edgedistill.models.classifier import load_classifier
from edgedistill.recipe import DistillSpec

LN3 = math.log(3.0)
KL_U_T = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL([.5, .5] || [.75, .25])
KL_T_R = 0.75 * math.log(3) + 0.25 * math.log(1 / 3)  # KL([.75, .25] || [.25, .75])


recipe = partial(classification_recipe, max_steps=26, eval_every=13)


@pytest.fixture(scope="module")
def run(clf_teacher, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r")
    return ClassificationRun(api._workspace(recipe(tmp, clf_teacher, data), tmp / "out"))


def _cfg(layers=2):
    return BertConfig(hidden_size=2, num_attention_heads=1, num_hidden_layers=layers, intermediate_size=4)


def test_unknown_strategy_lists_every_technique():
    with pytest.raises(RecipeError, match="unknown strategy 'ensemble'.*augment_kd, augment_self, classification, "
                                          "ema_self, embedding, mutual, online_ensemble, self_layerwise"):
        get_strategy("ensemble")


# ---- 1. layer-wise self-distillation with early exits ----

class _Stub(torch.nn.Module):
    def __init__(self, logits, hidden):
        super().__init__()
        self.logits, self.hidden = logits, hidden

    def forward(self, **_):
        return SimpleNamespace(logits=self.logits, hidden_states=self.hidden)


def test_exit_loss_by_hand():
    # exit head: dense and tanh give 0, so the exit's logits are the classifier bias (ln 3, 0) -> [.75, .25];
    # the final head is uniform [.5, .5]; label 0.
    spec = DistillSpec.from_table(dict(strategy="self_layerwise", losses={"hard_ce": 1.0}, temperature=1.0, exit_weight=0.5))
    strat = LayerwiseSelfStrategy(spec, {0: 0, 1: 1}, _cfg(), _cfg())
    exits = ExitHeads([0], 2, 2)
    with torch.no_grad():
        for p in exits.parameters():
            p.zero_()
        exits.heads["0"][2].bias.copy_(torch.tensor([LN3, 0.0]))
    final = torch.zeros(1, 2, requires_grad=True)
    model = ExitModel(_Stub(final, (None, torch.ones(1, 3, 2), None)), exits)
    total, parts = strat.loss(model, {"attention_mask": None}, SimpleNamespace(), torch.tensor([0]))
    want_exit = KL_U_T - math.log(0.75)  # KD from the final head (T = 1) + CE on the exit
    assert parts["hard_ce"] == pytest.approx(math.log(2), rel=1e-5)
    assert parts["exit_kd"] == pytest.approx(KL_U_T, rel=1e-5) and parts["exit_ce"] == pytest.approx(-math.log(0.75))
    assert total.item() == pytest.approx(math.log(2) + 0.5 * want_exit, rel=1e-5)
    total.backward()
    # the final head's logits are detached as the exits' teacher: only its own CE reaches them (p - y)
    assert final.grad[0].tolist() == pytest.approx([-0.5, 0.5])


def test_fit_temperature_recovers_the_scale_of_calibrated_logits():
    from edgedistill.distill.strategy_exits import fit_temperature

    g = torch.Generator().manual_seed(0)
    true = torch.randn(4000, 5, generator=g) * 2
    target = torch.multinomial(torch.softmax(true, -1), 1, generator=g)[:, 0]  # labels drawn from softmax(true)
    # logits 3x too sharp: the fitted temperature undoes it (within the grid's step and sampling noise)
    assert fit_temperature(true * 3, target) == pytest.approx(3.0, rel=0.12)
    assert fit_temperature(true / 2, target) == pytest.approx(0.5, rel=0.12)
    # an exit that always agrees would be sharpened without end: the grid's floor stops it short of 1.0 probabilities
    assert fit_temperature(true, true.argmax(-1)) == pytest.approx(0.25)


def test_calibration_folds_the_temperature_into_the_exit_and_keeps_its_answers():
    from edgedistill.distill.strategy_exits import calibrate_exits

    exits = ExitHeads([0], 2, 2)
    torch.manual_seed(0)

    class _Student(torch.nn.Module):  # the exit reads the first id, the final head answers the second
        def forward(self, input_ids, attention_mask, output_hidden_states=True):
            h = torch.nn.functional.one_hot(input_ids[:, 0], 2).float() * 2 - 1
            final = torch.nn.functional.one_hot(input_ids[:, 1], 2).float()
            return SimpleNamespace(logits=final, hidden_states=(None, h.unsqueeze(1)))

    with torch.no_grad():
        exits.heads["0"][0].weight.copy_(torch.eye(2) * 5)
        exits.heads["0"][0].bias.zero_()
        exits.heads["0"][2].weight.copy_(torch.eye(2) * 10)
        exits.heads["0"][2].bias.zero_()
    # the two ids agree on 3 texts in 4: a calibrated exit says 0.75 (margin ln 3), not its raw ~1.0 (margin 20)
    enc = {"input_ids": [[i % 2, i % 2 if i % 4 else 1 - i % 2] for i in range(64)], "attention_mask": [[1, 1]] * 64}
    before = exits.heads["0"](torch.tensor([[1.0, -1.0]]))
    temps = calibrate_exits(_Student(), exits, enc, pad_id=0)
    after = exits.heads["0"](torch.tensor([[1.0, -1.0]]))
    assert temps["0"] == pytest.approx(20 / math.log(3), rel=0.05)  # over-confident exit softened...
    torch.testing.assert_close(after, before / temps["0"])  # ...by its own weights
    assert after.argmax(-1) == before.argmax(-1)
    assert calibrate_exits(_Student(), exits, {"input_ids": [], "attention_mask": []}, pad_id=0) == {}


def test_self_layerwise_needs_two_layers_and_logit_losses():
    with pytest.raises(RecipeError, match="at least 2 layers"):
        LayerwiseSelfStrategy(DistillSpec(strategy="self_layerwise", losses={"hard_ce": 1.0}), {0: 0}, _cfg(1), _cfg())
    with pytest.raises(RecipeError, match="loss 'fitnets' needs hidden, which strategy 'self_layerwise'"):
        LayerwiseSelfStrategy(DistillSpec(strategy="self_layerwise", losses={"fitnets": 1.0}), {0: 0, 1: 1}, _cfg(), _cfg())


def test_self_layerwise_trains_exits_and_saves_them_via_the_cli(tmp_path, clf_teacher, data):
    path = recipe(tmp_path, clf_teacher, data, strategy="self_layerwise", losses={"kd": 0.5, "hard_ce": 0.5})
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "student"
    rec = json.loads((folder / "distill.json").read_text())
    hist = rec["losses"]
    assert hist[-1]["exit_ce"] < hist[0]["exit_ce"] and hist[-1]["hard_ce"] < hist[0]["hard_ce"]
    acc = rec["early_exits"]["test_accuracy"]
    assert set(acc) == {"0", "final"} and all(0 <= a <= 1 for a in acc.values())
    assert acc["final"] == pytest.approx(rec["metrics"]["test_accuracy"])
    student = AutoModelForSequenceClassification.from_pretrained(folder)  # still a plain HF classifier
    exits = load_exits(folder)
    meta = json.loads((folder / "early_exits.json").read_text())
    assert exits.layers == [0] and meta["test_accuracy"] == acc
    assert set(meta["temperature"]) == {"0"} and meta["temperature"]["0"] > 0  # calibrated on validation
    _, tok = load_classifier(folder)
    with torch.no_grad():
        z = exit_logits(student.eval(), exits, **tok(["a great movie"], return_tensors="pt"))
    assert set(z) == {"0", "final"} and z["0"].shape == (1, 2)


def test_training_state_maps_back_to_the_saved_student():
    state = {"student.bert.x": 1, "exits.heads.0.0.weight": 2, "peers.0.bert.y": 3, "peers.2.bert.y": 4, "z": 5}
    assert deliverable_state(state) == {"bert.x": 1, "bert.y": 3, "z": 5}


# ---- 2. N-peer mutual learning and online ensemble distillation ----

def _peers(*rows):
    outs = [torch.tensor([r], requires_grad=True) for r in rows]
    return SimpleNamespace(peers=[lambda o=o, **_: SimpleNamespace(logits=o) for o in outs]), outs


def test_online_ensemble_and_mutual_losses_by_hand():
    spec = DistillSpec.from_table(dict(strategy="online_ensemble", losses={"kd": 1.0}, temperature=1.0, peers=3))
    # peers [.75, .25], [.5, .5], [.25, .75]: their mean logits are (0, 0), the uniform target
    group, _ = _peers([LN3, 0.0], [0.0, 0.0], [-LN3, 0.0])
    total, parts = OnlineEnsembleStrategy(spec, {0: 0}, _cfg(), _cfg()).loss(group, {"attention_mask": None}, SimpleNamespace(mask=None),
                                                                              torch.tensor([0]))
    assert total.item() == pytest.approx(2 * KL_U_T, rel=1e-5) and parts["kd"] == pytest.approx(2 * KL_U_T / 3)
    # mutual: each peer averages KL(other || itself) over the two others
    group, _ = _peers([LN3, 0.0], [0.0, 0.0], [-LN3, 0.0])
    total, _ = MutualStrategy(spec.replace(strategy="mutual"), {0: 0}, _cfg(), _cfg()).loss(
        group, {"attention_mask": None}, SimpleNamespace(mask=None), torch.tensor([0]))
    kl_t_u = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    want = (KL_U_T + KL_T_R) / 2 + (kl_t_u + kl_t_u) / 2 + (KL_T_R + KL_U_T) / 2
    assert total.item() == pytest.approx(want, rel=1e-5)


def test_three_peers_train_and_peer_zero_is_handed_over(run):
    mutual = run.strategy(spec_of(run, strategy="mutual", losses={"hard_ce": 1.0, "kd": 1.0}, peers=3))
    group = mutual.prepare_student(copy.deepcopy(run.initial_student))
    key = "bert.encoder.layer.1.output.dense.weight"
    w = [p.state_dict()[key] for p in group.peers]
    assert len(w) == 3 and not torch.equal(w[1], w[2])
    # training: online_ensemble (mutual shares the peer group and loop; its N-peer loss is checked by hand above)
    student, _, gens = run.train(spec_of(run, strategy="online_ensemble", losses={"hard_ce": 1.0, "kd": 1.0}, peers=3))
    hist = gens[0]["result"].history
    assert hist[-1]["hard_ce"] < hist[0]["hard_ce"] and hist[-1]["kd"] > 0
    assert not hasattr(student, "peers")


# ---- 3. multi-teacher ensemble ----

def test_teacher_combination_by_hand():
    a, b = np.array([[LN3, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, LN3]])
    assert combine_logits([a, b], "mean") == pytest.approx(np.array([[LN3 / 2, 0], [0, LN3 / 2]]))
    # max probability .75 vs .5 -> weights .6 / .4 in row 0, .4 / .6 in row 1
    assert combine_logits([a, b], "confidence") == pytest.approx(np.array([[0.6 * LN3, 0], [0, 0.6 * LN3]]), rel=1e-5)
    h_sharp, h_flat = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), math.log(2)
    w = math.exp(-h_sharp) / (math.exp(-h_sharp) + math.exp(-h_flat))
    got = combine_logits([a, b], "confidence", "entropy")
    assert got[0] == pytest.approx([w * LN3, 0], rel=1e-5) and got[1] == pytest.approx([0, w * LN3], rel=1e-5)
    with pytest.raises(RecipeError, match="widths differ \\(t1 384, t2 768\\)"):
        check_widths(["t1", "t2"], [384, 768])
    with pytest.raises(RecipeError, match="same classes"):
        combine_logits([a, np.zeros((2, 3))], "mean")


def test_multi_teacher_cache_combines_each_teachers_cached_logits(run, tmp_path):
    other = classifier_teacher(build_tiny_bert(tmp_path / "enc2", seed=1), tmp_path / "teacher2", 1, 30)
    spec = spec_of(run, losses={"kd": 1.0, "fitnets": 1.0}, teachers=[str(other)], ensemble="confidence")
    strategy = run.strategy(spec)
    cache = run.cache(strategy, spec)
    m2, tok2 = load_classifier(other)
    ref2 = run.extra_teachers[str(other)].ref
    z1 = np.asarray(teacher_logits(run.teacher, run.tokenizer, run.ws.teacher_ref, run.train_texts, 32))
    z2 = np.asarray(teacher_logits(m2, tok2, ref2, run.train_texts, 32))
    assert not np.allclose(z1, z2)
    assert np.allclose(cache.logits, combine_logits([z1, z2], "confidence"), atol=1e-5)
    one = run.cache(strategy)  # the [teacher] alone: its hidden states differ from the two-teacher mean
    layer = strategy.teacher_hidden_indices()[0]
    assert not np.allclose(np.asarray(one.targets.hidden[layer], dtype=np.float32), cache.targets.hidden[layer])
    _, _, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1]["kd"] < hist[0]["kd"]
    rec = ensemble_test_accuracy(run, spec)  # what distill.json reports under "multi_teacher"
    assert list(rec["teachers"]) == [str(run.ws.teacher_ref.folder), str(other)]
    assert rec["teachers"][str(run.ws.teacher_ref.folder)] == pytest.approx(run.teacher_test_accuracy)
    assert 0 <= rec["ensemble_test_accuracy"] <= 1 and rec["ensemble"] == "confidence"
    with pytest.raises(RecipeError, match="attention transfer"):
        run.cache(run.strategy(spec_of(run, losses={"attention_kl": 1.0}, teachers=[str(other)])),
                  spec_of(run, teachers=[str(other)]))


def test_multi_teacher_missing_folder_names_the_key(run, tmp_path):
    spec = spec_of(run, losses={"kd": 1.0}, teachers=[str(tmp_path / "nope")])
    with pytest.raises(Exception, match=r"\[distill\] teachers = .*nope"):
        run.cache(run.strategy(spec), spec)


# ---- 4. augmentation-based distillation ----

def test_augmentation_is_seeded_and_edits_the_requested_share():
    ids = [2] + list(range(10, 50)) + [3]  # [CLS] 40 ordinary tokens [SEP]
    aug = AugmentSpec(mask=0.25, mask_id=4, special_ids=frozenset({0, 2, 3, 4}))
    a = augment_row(ids, aug, np.random.default_rng(7))
    assert a == augment_row(ids, aug, np.random.default_rng(7)) != augment_row(ids, aug, np.random.default_rng(8))
    assert sum(x != y for x, y in zip(a, ids, strict=True)) == 10 and a.count(4) == 10
    assert a[0] == 2 and a[-1] == 3
    d = augment_row(ids, AugmentSpec(drop=0.1, special_ids=aug.special_ids), np.random.default_rng(0))
    assert len(d) == len(ids) - 4 and d[0] == 2 and d[-1] == 3 and set(d) < set(ids)
    s = augment_row(ids, AugmentSpec(swap=0.2, special_ids=aug.special_ids), np.random.default_rng(0))
    assert sorted(s) == sorted(ids) and sum(x != y for x, y in zip(s, ids, strict=True)) == 8
    feats = {"input_ids": torch.tensor([ids, ids[:5] + [0] * 37]), "attention_mask": torch.tensor(
        [[1] * 42, [1] * 5 + [0] * 37])}
    out = augment_features(feats, AugmentSpec(drop=0.25, special_ids=aug.special_ids), np.random.default_rng(0), 0)
    assert out["input_ids"].shape == (2, 32) and out["attention_mask"].sum(1).tolist() == [32, 4]


def test_augment_shares_are_validated(tmp_path, clf_teacher, data, capsys):
    path = recipe(tmp_path, clf_teacher, data, strategy="augment_self", augment_drop=0.6, augment_mask=0.5)
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "augment_drop + augment_swap + augment_mask must stay below 1" in capsys.readouterr().err
    path = recipe(tmp_path, clf_teacher, data, strategy="mutual", peers=1)
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "key 'peers': expected 2..16, got 1" in capsys.readouterr().err


def test_augment_self_consistency_by_hand(run):
    spec = spec_of(run, strategy="augment_self", losses={"kd": 1.0}, temperature=1.0, augment_drop=0.0,
                   augment_swap=0.0, augment_mask=0.0)
    s = run.strategy(spec)
    feats = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    # no edits: the student's clean prediction equals its augmented one, so the consistency KD is 0
    total, parts = s.loss(run.initial_student, feats, SimpleNamespace(mask=None), torch.tensor([0]))
    assert parts["kd"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("strategy", ["augment_self", "augment_kd"])
def test_augmentation_strategies_train(run, strategy):
    spec = spec_of(run, strategy=strategy, losses={"kd": 1.0, "hard_ce": 1.0}, augment_mask=0.2, augment_drop=0.1)
    _, strat, gens = run.train(spec)
    hist = gens[0]["result"].history
    assert hist[-1]["hard_ce"] < hist[0]["hard_ce"]
    if strategy == "augment_kd":
        assert hist[-1]["kd"] < hist[0]["kd"]
    assert strat.aug.mask_id == run.tokenizer.mask_token_id and strat.aug.special_ids >= {0, 2, 3}


def test_benchmark_runs_the_new_techniques(tmp_path, clf_teacher, tiny_teacher, data):
    import shutil

    teachers = []
    for name, folder in (("t1", clf_teacher), ("t2", classifier_teacher(tiny_teacher, tmp_path / "t2src", 2, 30))):
        shutil.copytree(folder, tmp_path / name)
        (tmp_path / name / "teacher.json").write_text(json.dumps(
            {"train": {"unfreeze_layers": 0}, "val_accuracy": 0.5, "test_accuracy": 0.5, "best_epoch": 1,
             "seconds": 0}))
        teachers.append(tmp_path / name)
    mod = load_benchmark("kd_methods", "kd_methods_new")
    new = ["self_layerwise", "online_ensemble", "multi_teacher", "augment_self", "augment_kd"]
    assert set(new) <= set(mod.METHODS)
    out = tmp_path / "res" / "kd_methods"
    assert mod.main(["--teacher", str(teachers[0]), "--extra-teacher", str(teachers[1]), "--jsonl", str(data),
                     "--layers", "0", "3", "--ffn", "32", "--steps", "3", "--seeds", "0", "--threads", "1",
                     "--methods", "hard_label", *new, "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["headline"]["methods_benchmarked"] == ["hard_label", *new]
    assert all(0 <= res["methods"][n]["test_accuracy_mean"] <= 1 for n in new)
    assert "strategy = online_ensemble" in res["methods"]["online_ensemble"]["recipe"]
