"""Output-vocabulary trimming of causal-LM students (edgedistill/llm/output_vocab.py, trim_student.py)."""

import json

import pytest
import torch
from llm_tiny import SPECIAL, WORDS, save_tiny_bpe_llama, tiny_bpe_tokenizer, tiny_text, tiny_tokenizer

from edgedistill.errors import ModelError
from edgedistill.llm import output_vocab as ov
from edgedistill.llm.trim_student import small_tokenizer


@pytest.fixture(scope="module")
def bpe():
    tok = tiny_bpe_tokenizer()
    full = json.loads(tok.backend_tokenizer.to_str())
    train = tiny_text(30, words=40, seed=1)
    counts = ov.count_ids([tok.encode(t) for t in train], len(tok))
    return tok, full, train, counts


def test_seen_text_tokenizes_as_before_and_unseen_words_fall_back_to_kept_pieces(bpe):
    tok, full, train, counts = bpe
    plan = ov.plan(full, counts)
    small = small_tokenizer(tok, ov.trimmed_tokenizer_json(full, plan.new_to_old))
    assert tok.convert_tokens_to_ids("elephant") not in plan.new_to_old  # never in the counted text
    assert len(small) == len(plan.new_to_old) < len(tok)
    for text in train[:10]:  # every token kept: the same pieces, renumbered
        assert small.encode(text) == [plan.old_to_new[i] for i in tok.encode(text)]
    for text in ("the elephant and the zebra sat", "a giraffe ran in the park", "qwxz!"):
        ids = small.encode(text)
        assert max(ids) < len(plan.new_to_old) and small.decode(ids) == text
        assert len(ids) >= len(tok.encode(text))
    # special tokens keep their meaning
    assert small.convert_ids_to_tokens(plan.old_to_new[tok.eos_token_id]) == "</s>"


def test_kept_set_holds_specials_single_characters_and_every_merge_parent(bpe):
    tok, full, _, counts = bpe
    vocab = full["model"]["vocab"]
    for min_count, max_size in ((1, None), (5, None), (1, 280)):
        kept = set(ov.choose_kept(full, counts, min_count, max_size))
        assert {vocab[s] for s in SPECIAL} <= kept and {i for t, i in vocab.items() if len(t) == 1} <= kept
        for a, b in full["model"]["merges"]:
            if vocab[a + b] in kept:
                assert vocab[a] in kept and vocab[b] in kept
        frequent = {i for i in range(len(counts)) if counts[i] >= min_count}
        if max_size is None:
            assert frequent <= kept
        else:
            assert len(kept) <= max_size + 8  # the closure may add a few parents past the cap
    assert len(ov.choose_kept(full, counts, 5)) < len(ov.choose_kept(full, counts, 1))


def test_non_bpe_tokenizers_are_refused():
    word_level = json.loads(tiny_tokenizer().backend_tokenizer.to_str())
    with pytest.raises(ModelError, match="needs a BPE tokenizer"):
        ov.choose_kept(word_level, ov.count_ids([[4, 5]], len(SPECIAL) + len(WORDS)))


def test_trimmed_model_scores_kept_tokens_exactly_as_before(tmp_path, bpe):
    from edgedistill.llm.teacher import load_causal_lm

    tok, full, train, counts = bpe
    model, _ = load_causal_lm(save_tiny_bpe_llama(tmp_path / "m"))
    plan = ov.plan(full, counts, min_count=2)
    ids = torch.tensor([tok.encode(train[0])[:20]])
    before = model(input_ids=ids).logits
    ov.trim_causal_lm(model, plan.new_to_old)
    after = model(input_ids=torch.tensor([[plan.old_to_new[i] for i in ids[0].tolist()]])).logits
    assert after.shape[-1] == len(plan.new_to_old) == model.config.vocab_size
    assert torch.allclose(before[..., plan.new_to_old], after, atol=1e-6)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # a tied model stays tied
    eos = plan.old_to_new[3]
    assert model.config.eos_token_id == eos and model.generation_config.eos_token_id == eos


def test_read_rejects_a_malformed_record(tmp_path):
    (tmp_path / ov.FILE).write_text('{"new_to_old": [0, 1]}')
    with pytest.raises(ModelError, match="not an output-vocabulary record"):
        ov.read(tmp_path)
    assert ov.read(tmp_path / "nowhere") is None


def test_report_headline_carries_the_trim_and_its_cost():
    from edgedistill.llm.pipeline import headline, markdown

    distill = {"teacher": {"test": {"ppl": 54.0}}, "student": {"test_before": {"ppl": 700.0},
                                                              "test_after": {"ppl": 140.0, "agreement": 0.4}},
               "output_vocab": {"kept": 23821, "full_size": 49152, "tokens_per_full_token": 1.028,
                                "test_ppl_full": 140.0, "test_ppl_trimmed": 143.5, "counted_tokens": 10}}
    h = headline(distill, {}, {}, None)
    assert h["output_vocab"] == {k: v for k, v in distill["output_vocab"].items() if k != "counted_tokens"}
    text = markdown({"headline": h, "recipe": "r", "distill": distill, "greedy_outputs": []}, "")
    assert "23,821 of 49,152 tokens" in text and "140.00 before trimming, 143.50 after" in text
