"""[data] extra_texts: unlabelled text joins the distillation set only, never validation or test."""

import json
import zipfile

import numpy as np
import pytest
from conftest import classification_recipe, classifier_teacher, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill import api
from edgedistill.data import extra
from edgedistill.errors import RecipeError
from edgedistill.recipe import DataSpec, load_recipe
from edgedistill.workspace import Workspace

BROWN_CA01 = ("\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"
              "\n\tYes/rb ./.\n\tIt/pps did/dod n't/* rain/vb on/in Friday/nr ,/, he/pps said/vbd ./.\n")
CHAT = "categories:\n- ai\nconversations:\n- - What is AI?\n  - A field of science.\n- - Hi\n  - Hello there friend\n"


@pytest.fixture
def fake_corpora(monkeypatch, tmp_path):
    """The two registry corpora as small local files (the unit tests never fetch)."""
    from edgedistill.llm import brown, chatterbot

    folder = tmp_path / "brown"
    folder.mkdir()
    (folder / "ca01").write_text(BROWN_CA01, encoding="latin-1")
    (folder / "cats.txt").write_text("ca01 news\n")
    wheel = tmp_path / "chatterbot.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("chatterbot_corpus/data/english/ai.yml", CHAT)
    monkeypatch.setattr(brown, "ensure_brown", lambda: folder)
    monkeypatch.setattr(chatterbot, "fetch_wheel", lambda: wheel)


def test_sources_read_brown_sentences_and_chatterbot_utterances(fake_corpora):
    assert extra.brown_sentences() == ['The Fulton County Grand Jury said "no evidence".',
                                       "It didn't rain on Friday, he said."]
    assert extra.chatterbot_utterances() == ["What is AI?", "A field of science.", "Hello there friend"]


def test_recipe_names_are_the_registered_sources():
    from typing import get_args, get_type_hints

    (lit,) = get_args(get_type_hints(DataSpec)["extra_texts"])
    assert set(get_args(lit)) == set(extra.EXTRA_SOURCES)


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "data.jsonl", synthetic_rows(300))


def with_data_keys(recipe, **keys):
    """The recipe file with ``keys`` added to its [data] table (tiny_recipe's own ``data`` is the data path)."""
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    recipe.write_text(recipe.read_text().replace("[data]\n", "[data]\n" + lines))
    return recipe


def _ws(tmp_path, data, **keys):
    recipe = with_data_keys(tiny_recipe(tmp_path, tmp_path / "no-teacher-needed", data), **keys)
    return Workspace(load_recipe(recipe), tmp_path / "run")


def test_extra_texts_join_train_only(tmp_path, data, monkeypatch):
    plain = _ws(tmp_path, data)
    held_out = plain.texts("validation")[0], plain.texts("test")[0]
    fake = ["a new unlabelled sentence here", held_out[0], plain.texts("train")[0], "another  unlabelled sentence",
            "a new unlabelled sentence here", held_out[1]]
    monkeypatch.setitem(extra.EXTRA_SOURCES, "brown", lambda: list(fake))
    monkeypatch.setitem(extra.EXTRA_SOURCES, "chatterbot", lambda: ["a chat line to learn from"])
    ws = _ws(tmp_path, data, extra_texts=["brown", "chatterbot"])
    for split in ("train", "validation", "test"):
        assert ws.texts(split) == plain.texts(split)  # the labelled split is untouched
    # held-out and already-present sentences are dropped, duplicates once, whitespace normalised
    assert ws.extra_texts == {"brown": ["a new unlabelled sentence here", "another unlabelled sentence"],
                              "chatterbot": ["a chat line to learn from"]}
    assert ws.distill_texts() == plain.texts("train") + [*ws.extra_texts["brown"], *ws.extra_texts["chatterbot"]]
    assert plain.distill_texts() == plain.texts("train")
    assert not set(ws.distill_texts()) & (set(ws.texts("validation")) | set(ws.texts("test")))
    # a limit keeps a fixed subset
    limited = _ws(tmp_path, data, extra_texts=["brown", "chatterbot"], extra_texts_limit=2)
    kept = [t for v in limited.extra_texts.values() for t in v]
    assert len(kept) == 2 and kept == [t for v in _ws(tmp_path, data, extra_texts=["brown", "chatterbot"],
                                                       extra_texts_limit=2).extra_texts.values() for t in v]


@pytest.mark.parametrize("keys, expected", [
    ({"extra_texts": ["brown", "wordnet"]},
     "[data] key 'extra_texts'[1]: expected one of 'brown', 'chatterbot', got string 'wordnet'"),
    ({"extra_texts": ["brown", "brown"]}, "[data] key 'extra_texts': a source is named twice"),
    ({"extra_texts_limit": 10}, "[data] key 'extra_texts_limit': expected >= 1 with a non-empty extra_texts"),
])
def test_bad_extra_texts_is_one_line_naming_key_and_value(tmp_path, data, keys, expected):
    with pytest.raises(RecipeError) as e:
        _ws(tmp_path, data, **keys)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_embedding_distillation_trains_on_the_extra_texts(tmp_path, tiny_teacher, data, monkeypatch):
    monkeypatch.setitem(extra.EXTRA_SOURCES, "chatterbot", lambda: [f"unlabelled line number {i} about films"
                                                                    for i in range(40)])
    recipe = with_data_keys(tiny_recipe(tmp_path, tiny_teacher, data, distill={"max_steps": 4, "eval_every": 2}),
                            extra_texts=["chatterbot"])
    seen = []
    from edgedistill.distill import stage

    real = stage.train
    monkeypatch.setattr(stage, "train", lambda student, tok, strategy, texts, *a, **k: (
        seen.append(list(texts)), real(student, tok, strategy, texts, *a, **k))[1])
    out = api.distill(recipe, tmp_path / "run")
    record = json.loads((out / "distill.json").read_text())
    assert record["data"]["extra_texts"] == {"chatterbot": 40}
    ws = Workspace(load_recipe(recipe), tmp_path / "run")
    assert seen[0] == ws.texts("train") + [f"unlabelled line number {i} about films" for i in range(40)]


def test_classifier_kd_gets_unlabelled_rows_and_teacher_free_runs_refuse(tmp_path, tiny_teacher, data, monkeypatch):
    from edgedistill.distill.classify_stage import UNLABELLED, ClassificationRun

    monkeypatch.setitem(extra.EXTRA_SOURCES, "brown", lambda: [f"a plain sentence {i}" for i in range(25)])
    teacher = classifier_teacher(tiny_teacher, tmp_path / "teacher")
    plain = ClassificationRun(Workspace(load_recipe(classification_recipe(tmp_path, teacher, data, losses={
        "kd": 1.0, "hard_ce": 0.5})), tmp_path / "r"))
    recipe = with_data_keys(classification_recipe(tmp_path, teacher, data, max_steps=6, eval_every=3,
                                                  losses={"kd": 1.0, "hard_ce": 0.5}), extra_texts=["brown"])
    run = ClassificationRun(Workspace(load_recipe(recipe), tmp_path / "r"))
    n = len(plain.train_texts)
    assert run.labelled_train == n and len(run.train_texts) == n + 25
    assert np.array_equal(run.train_labels[:n], plain.train_labels) and (run.train_labels[n:] == UNLABELLED).all()
    assert np.array_equal(run.test_labels, plain.test_labels) and np.array_equal(run.val_labels, plain.val_labels)
    assert run.strategy(run.ws.recipe.distill).needs_logits
    free = run.ws.recipe.distill.replace(losses={"hard_ce": 1.0})
    with pytest.raises(RecipeError, match="extra_texts .* unlabelled sentences, but no loss of this run learns from"):
        run.strategy(free)
    # a short KD run over labelled + unlabelled rows trains and records what it added
    record = json.loads((api.distill(recipe, tmp_path / "cls") / "distill.json").read_text())
    assert record["data"]["extra_texts"] == {"brown": 25} and record["steps"] == 6
    assert all(np.isfinite(h["loss"]) for h in record["losses"])
