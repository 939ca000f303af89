"""Cross-task feature transfer (a teacher without a classification head supervises a classifier student
of another width through FitNets + hard CE), the tokenizer check before training, and the training-curve
page of classification runs."""

import json
import xml.etree.ElementTree as ET

import pytest
from conftest import build_tiny_bert, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill import api
from edgedistill.report.html import render_training_html
from edgedistill.distill import cls_trainer
from edgedistill.distill.classify_stage import ClassificationRun
from edgedistill.errors import RecipeError

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("d") / "rows.jsonl", synthetic_rows(160))


@pytest.fixture(scope="module")
def narrow_base(tmp_path_factory):
    """Same vocabulary as the tiny teacher, half its width."""
    return build_tiny_bert(tmp_path_factory.mktemp("n") / "narrow", layers=2, hidden=16, heads=2, ffn=32, seed=1)


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("o") / "other", layers=2, hidden=16, heads=2, ffn=32,
                           extra_words=("zebra", "quokka"))


def cross(tmp, teacher, data, base, **distill):
    return tiny_recipe(tmp, teacher, data, student={"layers": [0, 1], "base": str(base)},
                       distill={"strategy": "classification", "max_steps": 30, "eval_every": 10,
                                "learning_rate": 3e-3, "losses": {"fitnets": 1.0, "hard_ce": 1.0}, **distill})


def test_encoder_teacher_teaches_a_narrower_classifier_through_features(tmp_path, tiny_teacher, data, narrow_base):
    ws = api._workspace(cross(tmp_path, tiny_teacher, data, narrow_base), tmp_path / "out")
    run = ClassificationRun(ws)
    assert not run.teacher_has_head and run.teacher_test_accuracy is None
    assert run.initial_student.config.hidden_size == 16 and run.teacher.config.hidden_size == 32
    assert run.layer_map == {0: 1, 1: 3}  # no "copied from" layer: spread uniformly over the teacher
    strategy = run.strategy(ws.recipe.distill)
    assert [tuple(p.shape) for p in strategy.extra_parameters()][:2] == [(32, 16), (32,)]  # learned 16 -> 32 projection
    student, _, gens = run.train(ws.recipe.distill)
    hist = gens[0]["result"].history
    assert hist[-1]["fitnets"] < hist[0]["fitnets"] and hist[-1]["loss"] < hist[0]["loss"]
    assert student.config.hidden_size == 16 and 0 <= gens[0]["test_accuracy"] <= 1


def test_cross_task_run_writes_a_record_without_teacher_accuracy(tmp_path, tiny_teacher, data, narrow_base,
                                                                  capsys):
    path = cross(tmp_path, tiny_teacher, data, narrow_base, max_steps=10)
    api.distill(path, tmp_path / "out")
    rec = json.loads((tmp_path / "out" / "student" / "distill.json").read_text())
    assert rec["teacher"]["test_accuracy"] is None and rec["metrics"]["retention"] is None
    assert rec["student"]["layer_map"] == {"0": 1, "1": 3}
    err = capsys.readouterr().err
    assert "layer map student->teacher {0->1, 1->3} (layer_map_mode = 'uniform')" in err
    assert "vs teacher n/a (an encoder without a classification head)" in err


def test_logit_loss_from_a_teacher_without_a_head_is_refused(tmp_path, tiny_teacher, data, narrow_base):
    ws = api._workspace(cross(tmp_path, tiny_teacher, data, narrow_base, losses={"kd": 1.0, "fitnets": 1.0}),
                        tmp_path / "out")
    with pytest.raises(RecipeError, match=r"encoder without a classification head, so it has no logits for "
                                          r"\[distill\] loss\(es\) \['kd'\]; for cross-task transfer use feature "
                                          r"losses \(fitnets\) \+ hard_ce"):
        ClassificationRun(ws).train(ws.recipe.distill)


def test_token_level_losses_across_tokenizers_stop_before_training(tmp_path, tiny_teacher, data, other_vocab,
                                                                    monkeypatch):
    monkeypatch.setattr(cls_trainer, "train_classifier", lambda *a, **k: pytest.fail("training started"))
    path = cross(tmp_path, tiny_teacher, data, other_vocab)
    with pytest.raises(RecipeError, match=r"fitnets match token-level states, but the teacher tokenizer \(.*teacher: "
                                          r"BertTokenizer, 96 tokens\) and the \[student\] base .*other' tokenizer "
                                          r"\(BertTokenizer, 98 tokens\).*sorted_prob needs no shared vocabulary"):
        api.distill(path, tmp_path / "out")
    # embedding runs check at the same point, before the teacher is even loaded
    emb = tiny_recipe(tmp_path, tiny_teacher, data, student={"layers": [0, 1], "base": str(other_vocab)},
                      distill={"losses": {"cosine": 1.0, "hidden_mse": 1.0}})
    with pytest.raises(RecipeError, match=r"hidden_mse match token-level states.*\(cosine, mse; sorted_prob"):
        api.distill(emb, tmp_path / "out2")


def test_sentence_level_losses_accept_another_tokenizer(tmp_path, tiny_teacher, data, other_vocab):
    from edgedistill.distill.compat import check_tokenizers
    from edgedistill.recipe import load_recipe

    r = load_recipe(tiny_recipe(tmp_path, tiny_teacher, data, student={"layers": [0, 1], "base": str(other_vocab)},
                                distill={"losses": {"cosine": 1.0}}))
    check_tokenizers(r, tiny_teacher, other_vocab)  # no error: nothing token-aligned is compared


def test_training_page_plots_loss_and_validation_accuracy():
    record = {"strategy": "classification", "steps": 100, "train_seconds": 3.0,
              "metrics": {"best_val_accuracy": 0.8, "test_accuracy": 0.75},
              "losses": [{"step": s, "lr": 1e-3, "loss": 2.0 / s, "kd": 1.0 / s, "hard_ce": 1.0 / s}
                         for s in (25, 50, 75, 100)],
              "evals": [{"step": s, "val_accuracy": a} for s, a in ((0, 0.5), (50, 0.7), (100, 0.8))]}
    page = render_training_html(record, "tiny")
    svgs = [ET.fromstring(s[: s.index("</svg>") + 6]) for s in page.split("<svg")[1:] for s in ["<svg" + s]]
    titles = [svg.find(f"{SVG}title").text for svg in svgs]
    assert titles[0].startswith("Distillation loss curves") and titles[1].startswith("Validation accuracy")
    acc = svgs[1]
    lines = [p.get("d") for p in acc.iter(f"{SVG}path") if p.get("fill") == "none"]
    assert len(lines) == 1 and lines[0].count("M") + lines[0].count("L") == 3  # one line through 3 evaluations
    assert len(list(acc.iter(f"{SVG}circle"))) == 3
    loss = svgs[0]
    assert sum(1 for p in loss.iter(f"{SVG}path") if p.get("fill") == "none") >= 3  # total, kd, hard_ce
    assert "val_cosine" not in page and "test accuracy 0.7500" in page
