"""Loop features shared by every strategy: gradient accumulation, early stopping, the recipe keys."""

import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl

from edgedistill import api
from edgedistill.distill import cls_trainer
from edgedistill.distill.classify_stage import ClassificationRun
from edgedistill.errors import RecipeError
from edgedistill.recipe import load_recipe


@pytest.fixture(scope="module")
def run(clf_teacher, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    data = write_jsonl(tmp / "rows.jsonl", synthetic_rows(120))
    path = tiny_recipe(tmp, clf_teacher, data, distill={"strategy": "classification", "eval_sentences": 12,
                                                            "losses": {"kd": 1.0, "hard_ce": 0.5}})
    return ClassificationRun(api._workspace(path, tmp / "out"))


def _spec(run, **kw):
    return run.ws.recipe.distill.replace(**{"max_steps": 8, "eval_every": 100, "batch_size": 16,
                                            "learning_rate": 3e-3, **kw})


def test_gradient_accumulation_matches_the_full_batch(run, monkeypatch):
    # every evaluation "improves", so the kept weights are the last step's
    ticks = iter(range(10**6))
    monkeypatch.setattr(cls_trainer, "accuracy", lambda *a: float(next(ticks)))
    # the tiny BERT has no dropout, so micro-batches 2 x 8 and 4 x 4 must give the 1 x 16 update
    full, _, g1 = run.train(_spec(run, eval_every=4))
    for accum in (2, 4):
        split, _, g2 = run.train(_spec(run, eval_every=4, grad_accum_steps=accum))
        assert g2[0]["result"].best_step == 8
        assert [h["loss"] for h in g1[0]["result"].history] == pytest.approx(
            [h["loss"] for h in g2[0]["result"].history], abs=1e-5)
        for (k, a), b in zip(full.state_dict().items(), split.state_dict().values(), strict=True):
            assert torch.allclose(a, b, atol=1e-5), (accum, k)
    assert not torch.equal(full.classifier.weight, run.initial_student.classifier.weight)  # it did train


def test_early_stopping_stops_after_patience_evaluations(run, capsys):
    # a learning rate too small to change a prediction: validation accuracy never improves
    _, _, gens = run.train(_spec(run, max_steps=40, eval_every=4, learning_rate=1e-12, early_stop_patience=2))
    res = gens[0]["result"]
    assert res.steps == 8 and [e["step"] for e in res.evals] == [0, 4, 8] and res.best_step == 0
    err = capsys.readouterr().err
    assert "early stop at step 8: no better val_accuracy in 2 evaluations" in err
    # every evaluation is reported as it happens, with the best so far
    assert "step 4/40: val_accuracy " in err and "(best " in err and "at step 0)" in err
    _, _, gens = run.train(_spec(run, max_steps=12, eval_every=4, learning_rate=1e-12))
    assert gens[0]["result"].steps == 12  # patience 0: never stops early


@pytest.mark.parametrize("key,value,msg", [
    ("grad_accum_steps", 0, "expected 1..batch_size (16), got 0"),
    ("grad_accum_steps", 17, "expected 1..batch_size (16), got 17"),
    ("checkpoint_every", -1, "expected steps >= 0 (0 = no checkpoints), got -1"),
    ("early_stop_patience", -2, "expected evaluations >= 0 (0 = off), got -2"),
])
def test_bad_engine_keys_are_one_line_errors(tmp_path, tiny_teacher, key, value, msg):
    path = tiny_recipe(tmp_path, tiny_teacher, tmp_path / "x.jsonl", distill={"batch_size": 16, key: value})
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert f"[distill] key {key!r}: {msg}" in str(e.value) and "\n" not in str(e.value)
