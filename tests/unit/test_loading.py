"""Every model folder's tokenizer is checked when it loads: a folder without tokenizer files is refused."""

import shutil

import pytest

from edgedistill.errors import ModelError
from edgedistill.models.loading import load_encoder, load_tokenizer

from conftest import build_tiny_bert, classifier_teacher


def _strip_tokenizer(folder):
    for f in folder.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            f.unlink()
    return folder


def test_a_real_vocabulary_loads(tiny_teacher):
    tok = load_tokenizer(tiny_teacher)
    assert tok.padding_side == "right" and len(tok) > 50


def test_an_encoder_without_tokenizer_files_is_refused(tiny_teacher, tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(tiny_teacher, folder)
    with pytest.raises(ModelError) as e:
        load_encoder(_strip_tokenizer(folder))
    msg = str(e.value)
    assert str(folder) in msg and "0 ordinary tokens" in msg and "[UNK]" in msg and "\n" not in msg


def test_a_classifier_without_tokenizer_files_is_refused(tiny_teacher, tmp_path):
    from edgedistill.models.classifier import load_classifier

    folder = classifier_teacher(tiny_teacher, tmp_path / "cls")
    assert load_classifier(folder)[1].unk_token == "[UNK]"
    with pytest.raises(ModelError, match="vocabulary files"):
        load_classifier(_strip_tokenizer(folder))


def test_a_vocabulary_that_cannot_spell_english_is_refused(tmp_path):
    # Special tokens plus words that never occur in English prose, and no single-character fallback.
    from transformers import BertTokenizer

    folder = build_tiny_bert(tmp_path / "t")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zyzzyva", "qoph"]
    (folder / "tokenizer.json").unlink()
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    with pytest.raises(ModelError, match=r"2 ordinary tokens and turns (\d+) of \1 tokens of plain English into \[UNK\]"):
        load_tokenizer(folder)


def test_a_causal_lm_without_tokenizer_files_is_refused(tmp_path):
    from llm_tiny import save_tiny_llama

    from edgedistill.llm.teacher import load_causal_lm

    folder = save_tiny_llama(tmp_path / "lm")
    assert load_causal_lm(folder)[1] is not None  # a small word-level vocabulary is a real one
    with pytest.raises(ModelError):
        load_causal_lm(_strip_tokenizer(folder))
