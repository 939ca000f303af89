import json

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from edgedistill.models.vocab import count_pieces, trim, trim_embedding, vocab_txt

TEXT = ("The quick brown fox jumps over the lazy dog. A transformer student keeps the teacher's sentence "
        "embeddings while running on a phone; distillation trims layers, widths and now the vocabulary. "
        "Sentences about weather, sports, cooking and travel make the vocabulary broad enough.").split(". ")


def _bert_like():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(TEXT * 3 + ["zebra xylophone quantum jazz"], trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def test_kept_text_round_trips_and_oov_degrades():
    tok = _bert_like()
    full = json.loads(tok.to_str())
    trimmed = trim(full, count_pieces(tok, TEXT[:2]), min_count=1)
    assert len(trimmed.new_to_old) < len(full["model"]["vocab"])
    small = Tokenizer.from_str(json.dumps(trimmed.tokenizer_json))
    for line in TEXT[:2]:
        a, b = tok.encode(line), small.encode(line)
        assert a.tokens == b.tokens
        assert [trimmed.new_to_old[i] for i in b.ids] == a.ids
    oov = small.encode("zebra xylophone quantum jazz")
    assert "[UNK]" in oov.tokens or any(t.startswith("##") for t in oov.tokens)
    assert oov.tokens[0] == "[CLS]" and oov.ids[0] == trimmed.tokenizer_json["model"]["vocab"]["[CLS]"]
    assert vocab_txt(trimmed).splitlines()[trimmed.old_to_new[tok.token_to_id("[SEP]")]] == "[SEP]"
    emb = np.arange(len(full["model"]["vocab"]) * 2).reshape(-1, 2)
    assert (trim_embedding(emb, trimmed.new_to_old)[5] == emb[trimmed.new_to_old[5]]).all()


def test_dropped_whole_words_split_into_kept_pieces_without_unk():
    tok = _bert_like()
    full = json.loads(tok.to_str())
    counts = count_pieces(tok, TEXT)
    trimmed = trim(full, counts, min_count=1, max_size=60)
    small = Tokenizer.from_str(json.dumps(trimmed.tokenizer_json))
    assert len(trimmed.new_to_old) < len({i for i in counts})
    for line in TEXT:
        a, b = tok.encode(line), small.encode(line)
        assert "[UNK]" not in b.tokens
        assert len(b.tokens) >= len(a.tokens)
        assert small.decode(b.ids) == tok.decode(a.ids)


def test_runtime_tokenizer_pads_with_the_trimmed_pad_id():
    from edgedistill.runtime.tokenize import BundleTokenizer

    tok = _bert_like()
    trimmed = trim(json.loads(tok.to_str()), count_pieces(tok, TEXT[:1]), min_count=1)
    rt = BundleTokenizer(json.dumps(trimmed.tokenizer_json), {"pad_token": "[PAD]"}, 32, ["input_ids"])
    ids = rt([TEXT[0], "the"])["input_ids"]
    pad_new = trimmed.tokenizer_json["model"]["vocab"]["[PAD]"]
    assert ids[1, -1] == pad_new
    assert [trimmed.new_to_old[i] for i in ids[0] if i != pad_new] == tok.encode(TEXT[0]).ids
