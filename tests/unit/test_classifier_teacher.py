"""The classifier teacher: frozen encoder + head trained on labelled data, saved as a plain HF classifier."""

import json

import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl

from edgedistill import api
from edgedistill.cli import main
from edgedistill.errors import ModelError
from edgedistill.models.classifier import (
    is_classifier_folder,
    labelled_split,
    load_classifier,
    predict_logits,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("d") / "rows.jsonl", synthetic_rows(240))


def test_frozen_head_learns_and_saves_a_transformers_classifier(tmp_path, tiny_teacher, data):
    recipe = tiny_recipe(tmp_path, tiny_teacher, data)
    rec = api.teacher_classifier(recipe, tmp_path / "clf", epochs=2)
    assert rec["best_epoch"] >= 1 and len(rec["history"]) == 2
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf")
    # integer labels in the data: the class names are those integers (names come from the data)
    assert model.config.id2label == {0: "0", 1: "1"}
    assert (tmp_path / "clf" / "model.safetensors").is_file() and is_classifier_folder(tmp_path / "clf")
    # the encoder stayed frozen: its weights are the teacher's
    base, _ = load_classifier(tmp_path / "clf")
    from edgedistill.models.loading import load_encoder

    enc, _ = load_encoder(tiny_teacher)
    assert torch.equal(base.bert.encoder.layer[3].output.dense.weight, enc.encoder.layer[3].output.dense.weight)
    assert json.loads((tmp_path / "clf" / "teacher.json").read_text())["kind"] == "edgedistill-classifier-teacher"
    # the reported validation accuracy is the saved model's
    ws = api._workspace(recipe, None)
    texts, labels = labelled_split(ws, "validation")
    preds = predict_logits(base, ws.teacher[1], texts, 32).argmax(1)
    assert rec["val_accuracy"] == pytest.approx(float((preds == labels).mean()))


def test_training_the_whole_encoder_learns_the_task(tmp_path, tiny_teacher, data):
    # a random tiny BERT's [CLS] state barely varies, so the head alone cannot learn here; with the
    # blocks trained the synthetic sentiment words decide the label
    recipe = tiny_recipe(tmp_path, tiny_teacher, data)
    rec = api.teacher_classifier(recipe, tmp_path / "clf", unfreeze_layers=4, epochs=15, learning_rate=3e-3)
    assert rec["val_accuracy"] >= 0.8
    assert rec["history"][-1]["train_loss"] < rec["history"][0]["train_loss"]


def test_unfrozen_top_layer_changes_and_cli_prints_accuracy(tmp_path, tiny_teacher, data, capsys):
    recipe = tiny_recipe(tmp_path, tiny_teacher, data)
    assert main(["teacher", "classifier", str(recipe), "-o", str(tmp_path / "ft"), "--unfreeze-layers", "1",
                 "--epochs", "1"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    model, _ = load_classifier(tmp_path / "ft")
    from edgedistill.models.loading import load_encoder

    enc, _ = load_encoder(tiny_teacher)
    assert not torch.equal(model.bert.encoder.layer[3].output.dense.weight, enc.encoder.layer[3].output.dense.weight)
    assert torch.equal(model.bert.encoder.layer[2].output.dense.weight, enc.encoder.layer[2].output.dense.weight)


def test_bad_inputs(tmp_path, tiny_teacher, data, capsys):
    with pytest.raises(ModelError, match="not a sequence classifier"):
        load_classifier(tiny_teacher)
    recipe = tiny_recipe(tmp_path, tiny_teacher, data)
    assert main(["teacher", "classifier", str(recipe), "-o", str(tmp_path / "x"), "--unfreeze-layers", "9"]) == 2
    assert "the encoder has 4 blocks" in capsys.readouterr().err


def test_top_blocks_on_cached_states_match_the_full_forward(tiny_teacher):
    from edgedistill.distill.teacher_cache import teacher_targets
    from edgedistill.models.classifier import _padded, _top_forward, classifier_from_encoder
    from edgedistill.models.loading import load_encoder
    from edgedistill.models.teacher import TeacherRef

    enc, tok = load_encoder(tiny_teacher)
    model = classifier_from_encoder(enc).eval()
    texts = ["the movie was great", "a dull film that was really tedious and so bland", "fun"]
    ref = TeacherRef(folder=tiny_teacher, weights=tiny_teacher / "model.safetensors", sha256="f" * 64, source="t")
    states = teacher_targets(enc, tok, ref, texts, 32, "cls", False, layers=[2])
    with torch.no_grad():
        got = _top_forward(model, 2)(*_padded(states, 2, [0, 1, 2]))
        want = model(**tok(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(got, want, atol=5e-3)  # cached states are fp16


def _named_rows(n: int, names=("negative", "positive")) -> list[dict]:
    rows = synthetic_rows(n)
    for r in rows:
        r["label"] = names[r["label"]]
    return rows


def test_string_labels_from_csv_become_the_checkpoint_mapping(tmp_path, tiny_teacher, capsys):
    import csv

    rows = synthetic_rows(240)
    names = ("zeta-neg", "alpha pos", "mid")  # three classes, names not in sorted order
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "label"])
        w.writeheader()
        for r in rows:
            w.writerow({"id": r["id"], "text": r["text"], "label": names[r["id"] % 3]})
    recipe = tiny_recipe(tmp_path, tiny_teacher, path)
    recipe.write_text(recipe.read_text().replace('source = "jsonl"', 'source = "csv"'))
    rec = api.teacher_classifier(recipe, tmp_path / "clf", epochs=1)
    model, _ = load_classifier(tmp_path / "clf")
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "alpha pos", 1: "mid", 2: "zeta-neg"}
    assert model.config.label2id == {"alpha pos": 0, "mid": 1, "zeta-neg": 2}
    assert rec["data"]["labels"] == ["alpha pos", "mid", "zeta-neg"]
    counts = rec["data"]["class_counts"]
    assert sum(counts["train"].values()) == rec["data"]["train"] and set(counts["test"]) == set(names)
    err = capsys.readouterr().err + capsys.readouterr().out
    assert "classes from the label field 'label': 3" in err and "train:" in err


def test_label_parsing_and_errors(tmp_path, tiny_teacher):
    from edgedistill.data.labels import label_names, parse_label
    from edgedistill.errors import DataError

    assert parse_label("3", "f", "label") == 3 and parse_label(" spam ", "f", "label") == "spam"
    assert parse_label("", "f", "label") is None and parse_label(2.0, "f", "label") == 2
    with pytest.raises(DataError, match="neither an integer nor a name"):
        parse_label(0.5, "f:3", "label")
    assert label_names([10, 2, None, 2]) == ["2", "10"]  # numeric order, not text order
    assert label_names([None]) is None
    with pytest.raises(DataError, match="mixes integers"):
        label_names([1, "spam"])
    rows = synthetic_rows(240)
    rows[5]["label"] = "spam"
    recipe = tiny_recipe(tmp_path, tiny_teacher, write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert main(["teacher", "classifier", str(recipe), "-o", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert not (tmp_path / "x").exists()


def test_student_maps_named_labels_through_the_teacher(tmp_path, tiny_teacher):
    """A named-label file whose names the teacher knows in another order still trains the right classes."""
    from conftest import classifier_teacher

    from edgedistill.distill.classify_stage import ClassificationRun

    teacher = classifier_teacher(tiny_teacher, tmp_path / "t")  # classes {0: negative, 1: positive}
    data = write_jsonl(tmp_path / "named.jsonl", _named_rows(200))
    recipe = tiny_recipe(tmp_path, teacher, data, distill={"strategy": "classification"})
    run = ClassificationRun(api._workspace(recipe, tmp_path / "run"))
    ws = run.ws
    texts = ws.texts("train")
    by_text = {r["text"]: r["label"] for r in _named_rows(200)}
    assert [("negative", "positive")[y] for y in run.train_labels[:20]] == [by_text[t] for t in run.train_texts[:20]]
    assert len(texts) >= len(run.train_texts)
    bad = write_jsonl(tmp_path / "bad.jsonl", _named_rows(200, ("negative", "neutral")))
    recipe = tiny_recipe(tmp_path, teacher, bad, distill={"strategy": "classification"})
    from edgedistill.errors import DataError

    with pytest.raises(DataError, match="'neutral' is not a class of the teacher"):
        ClassificationRun(api._workspace(recipe, tmp_path / "run2"))
