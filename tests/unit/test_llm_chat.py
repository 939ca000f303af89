import json

import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.chat_data import (
    ChatExample,
    ChatMix,
    answer_batch,
    build_chat_set,
    chat_ids,
    close_at_sentence,
    chat_prompt_pool,
    instruction_prompts,
    is_held_out,
    teacher_answers,
)
from edgedistill.llm.chat_eval import chat_markdown, cut_at_stop, evaluate_chat, greedy_answers, rouge_l_f
from edgedistill.llm.chatterbot import ChatPrompt
from edgedistill.llm.methods import Tutor
from edgedistill.llm.on_policy import chat_prompt_ids, sample_continuation
from edgedistill.llm.recipe import LLMDataSpec
from edgedistill.llm.train import TrainConfig, _stream, chat_rows, train_causal

EOS, PAD = 3, 0
PROMPTS = [[4, 5, 6], [7, 8], [9, 10, 11, 12], [13, 14, 15], [16, 17]]


# ---- metrics


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat on mat") = 4 words: P = 4/4, R = 4/6, F1 = 2PR/(P+R) = 0.8
    assert rouge_l_f("the cat sat on the mat", "the cat on mat") == pytest.approx(0.8)
    # case and punctuation are ignored; order matters (LCS of "a b c" and "c b a" is 1: F1 = 1/3)
    assert rouge_l_f("The CAT, sat!", "the cat sat") == pytest.approx(1.0)
    assert rouge_l_f("a b c", "c b a") == pytest.approx(1 / 3)
    assert rouge_l_f("a b", "") == 0.0 and rouge_l_f("", "  ") == 1.0 and rouge_l_f("x y", "z") == 0.0


def test_cut_at_stop_keeps_the_stop_token():
    assert cut_at_stop([5, 6, 3, 7, 3], [3]) == [5, 6, 3]
    assert cut_at_stop([5, 6], [3]) == [5, 6] and cut_at_stop([3, 5], [3, 9]) == [3]


def test_batched_greedy_answers_equal_the_one_at_a_time_loop():
    model = tiny_llama(layers=2, seed=3)
    got = greedy_answers(model, PROMPTS, 6, [EOS], PAD)
    for p, a in zip(PROMPTS, got, strict=True):
        assert a == cut_at_stop(sample_continuation(model, p, 6, 0.0)[len(p):], [EOS])


def _examples(model, prompts=PROMPTS, n=6):
    answers = greedy_answers(model, prompts, n, [EOS], PAD)
    return [ChatExample(p, a, "chatterbot:t" if i % 2 else "instruction:1", f"prompt {i}")
            for i, (p, a) in enumerate(zip(prompts, answers, strict=True))]


def test_the_teacher_scores_itself_perfectly_and_a_mute_student_scores_zero():
    teacher, tok = tiny_llama(layers=2, seed=3), tiny_tokenizer()
    ex = _examples(teacher)
    me = evaluate_chat(teacher, tok, ex, [EOS], PAD, 6, batch_size=2)
    assert me["chat_agreement"] == 1.0 and me["chat_rougeL_vs_teacher"] == 1.0
    assert me["chat_nonempty_rate"] == me["teacher_nonempty_rate"] > 0
    mute = tiny_llama(layers=2, seed=4)
    with torch.no_grad():
        mute.model.norm.weight.zero_()  # all logits 0: argmax is <pad>, a special token that decodes to ""
    m = evaluate_chat(mute, tok, ex, [EOS], PAD, 6)
    assert m["chat_nonempty_rate"] == 0.0 and m["chat_rougeL_vs_teacher"] == 0.0 and m["chat_agreement"] < 0.5
    assert set(m["nonempty_by_source"]) == {"chatterbot", "instruction"} and len(m["examples"]) == 5
    md = "\n".join(chat_markdown(m))
    assert "| prompt | teacher | student |" in md and "*(empty)*" in md and "non-empty answers 0.0%" in md


# ---- data


def test_chat_ids_is_the_inference_template_and_on_policy_prompts_use_it():
    tok = tiny_tokenizer()
    assert chat_ids(tok, "the cat sat") == tok("the cat sat", add_special_tokens=False)["input_ids"]
    tok.chat_template = ("{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>{% endif %}")
    ids = chat_ids(tok, "the cat sat")
    assert ids == tok.apply_chat_template([{"role": "user", "content": "the cat sat"}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
    assert ids[0] == 2 and ids[-1] == 2 and 3 in ids
    assert chat_prompt_ids(tok, ["the cat sat"], 3) == [ids[-3:]]


class _Sentences:
    """Decodes any block to the same prose, so the passages are predictable."""

    def decode(self, ids, skip_special_tokens=True):
        return ("cut off here. The harbour was quiet in the morning. Boats rested against the wooden pier. "
                "Fishermen mended their nets slowly. Gulls circled above the water. and the end is cut")


def test_instruction_prompts_wrap_whole_sentences_of_the_text():
    got = instruction_prompts(_Sentences(), np.zeros((3, 8), dtype=np.int32), 20, seed=1)
    assert len(got) == 20 and all(p.source.startswith("instruction:") for p in got)
    assert len({p.source for p in got}) > 3  # several templates
    for p in got:
        assert "cut off" not in p.text and "the end is cut" not in p.text  # partial sentences never used
    assert instruction_prompts(_Sentences(), np.zeros((3, 8), dtype=np.int32), 20, seed=1) == got


def test_held_out_prompts_are_chosen_by_their_own_text_only():
    bot = [ChatPrompt("t", f"question number {i}?") for i in range(400)]
    train, held = chat_prompt_pool(tiny_tokenizer(), np.zeros((0, 8), dtype=np.int32), 0, chatterbot=bot)
    assert not {p.text for p in train} & {p.text for p in held} and len(train) + len(held) == 400
    assert 20 <= len(held) <= 60  # ~10 %
    assert all(is_held_out(p.text) for p in held) and not any(is_held_out(p.text) for p in train)
    _, held_fewer = chat_prompt_pool(tiny_tokenizer(), np.zeros((0, 8), dtype=np.int32), 0, chatterbot=bot[::2])
    assert {p.text for p in held_fewer} == {p.text for p in held if int(p.text.split()[2][:-1]) % 2 == 0}


def test_answer_batch_masks_the_prompt_and_the_padding():
    ex = [ChatExample([10, 11, 12], [20, 21, EOS]), ChatExample([13], [22])]
    ids, labels = answer_batch(ex, PAD, max_len=16)
    assert ids.tolist() == [[10, 11, 12, 20, 21, EOS], [13, 22, PAD, PAD, PAD, PAD]]
    # position t predicts token t + 1; only positions predicting an answer token carry a label
    assert labels.tolist() == [[-100, -100, 20, 21, EOS, -100], [22, -100, -100, -100, -100, -100]]
    _, cut = answer_batch(ex[:1], PAD, max_len=4)
    assert cut.tolist() == [[-100, -100, 20, -100]]


# ---- cache


def _answers(model, root, prompts=PROMPTS, **kw):
    args = dict(teacher_sha="a" * 64, tokenizer_sha="tok", stops=[EOS], pad_id=PAD, max_new_tokens=5,
                batch_size=2, root=root)
    return teacher_answers(model, prompts, **(args | kw))


def test_answers_are_cached_resumed_and_keyed_by_the_settings(tmp_path):
    teacher = tiny_llama(layers=2, seed=9)
    first, n = _answers(teacher, tmp_path)
    assert n == 5 and first == greedy_answers(teacher, PROMPTS, 5, [EOS], PAD)
    folder = next(tmp_path.iterdir())
    files = sorted(folder.glob("*.json"))
    assert len(files) == 5
    assert _answers(teacher, tmp_path) == (first, 0)
    # a run killed after some answers: the finished ones are kept, only the rest is generated
    files[0].unlink()
    files[1].write_text("{not json")
    assert _answers(teacher, tmp_path) == (first, 2)
    # a file holding another prompt's answer (a hash collision, a hand edit) is not trusted
    d = json.loads(files[2].read_text())
    files[2].write_text(json.dumps({"prompt": [1], "answer": d["answer"]}))
    assert _answers(teacher, tmp_path)[1] == 1
    for change in ({"max_new_tokens": 4}, {"teacher_sha": "b" * 64}, {"stops": [EOS, 7]}, {"tokenizer_sha": "x"}):
        assert _answers(teacher, tmp_path, **change)[1] == 5
    assert len(list(tmp_path.iterdir())) == 5


def test_build_chat_set_splits_encodes_and_answers(tmp_path):
    teacher, tok = tiny_llama(layers=2, seed=9), tiny_tokenizer()
    # sorted: get_vocab's order changes between processes (a Rust hash map), and with it the hash-based split
    bot = [ChatPrompt("t", " ".join(["the cat sat"] * (1 + i % 3)) + f" {w}")
           for i, w in enumerate(sorted(tok.get_vocab())) if not w.startswith("<")]
    tutor = Tutor(teacher, "a" * 64, tok, "tok")
    cs = build_chat_set(tutor, np.zeros((0, 8), dtype=np.int32), n_train=6, n_held_out=2, n_instructions=0,
                        max_new_tokens=4, max_prompt_tokens=9, chatterbot=bot, root=tmp_path)
    assert len(cs.train) == 6 and 1 <= len(cs.held_out) <= 2 and cs.generated == len(cs.train) + len(cs.held_out)
    assert cs.stops == [EOS] and cs.pad_id == PAD
    assert all(len(e.prompt) <= 9 for e in cs.train + cs.held_out)  # longer prompts skipped, never cut
    assert not {e.text for e in cs.train} & {e.text for e in cs.held_out}
    assert all(not is_held_out(e.text) for e in cs.train) and all(is_held_out(e.text) for e in cs.held_out)
    assert cs.train[0].prompt == chat_ids(tok, cs.train[0].text)


def test_an_answer_cut_by_the_cap_ends_at_its_last_sentence_then_the_stop():
    class Pieces:  # decode of one id is its piece, as for a BPE vocabulary
        words = {1: " The", 2: " cat", 3: " sat", 4: ".", 5: " It", 6: " ran", 7: "!\")", 8: " and"}

        def decode(self, ids):
            return "".join(self.words[i] for i in ids)

    tok, eos = Pieces(), 99
    cut = [1, 2, 3, 4, 5, 6, 3, 7, 8, 2, 3, 8]  # "The cat sat. It ran sat!") and cat sat and" at the 12-token cap
    assert close_at_sentence(cut, [eos], tok, 12) == ([1, 2, 3, 4, 5, 6, 3, 7, eos], True)
    assert close_at_sentence(cut, [eos], tok, 16) == (cut, False)  # under the cap: the teacher chose to end there
    assert close_at_sentence([1, 2, 3, eos], [eos], tok, 4) == ([1, 2, 3, eos], False)  # stopped by itself
    early = [1, 4] + [2] * 10  # the only sentence end is before MIN_CLOSED_ANSWER tokens: left open
    assert close_at_sentence(early, [eos], tok, 12) == (early, False)


# ---- training


def test_the_stream_mixes_chat_rows_and_visits_every_example_once_per_pass():
    rows = _stream(10, 3, 1, 4, n_chat=1, n_examples=5)(np.random.default_rng(0))
    steps = [next(rows) for _ in range(5)]
    for r in steps:
        assert ((r >= 0) & (r < 10)).sum() == 3 and (r < 0).sum() == 1 and (r >= 10).sum() == 1
    assert sorted(int(r[r >= 10][0]) for r in steps) == [10, 11, 12, 13, 14]
    # without chat the stream is the one it always was (old checkpoints replay the same batches)
    a, b = _stream(10, 3, 0, 0)(np.random.default_rng(1)), _stream(10, 3, 0, 0, 0, 7)(np.random.default_rng(1))
    assert all(np.array_equal(next(a), next(b)) for _ in range(4))
    cfg = TrainConfig(batch_size=4)
    mix = lambda r: ChatMix([], r, PAD)  # noqa: E731
    assert chat_rows(cfg, None) == 0 and chat_rows(cfg, mix(0.0)) == 0
    assert chat_rows(cfg, mix(0.01)) == 1 and chat_rows(cfg, mix(0.3)) == 1 and chat_rows(cfg, mix(0.5)) == 2


@pytest.fixture(scope="module")
def blocks():
    b = pack_blocks(tiny_text(30, words=40), tiny_tokenizer(), 16)
    return b[:-4], b[-4:]


def test_chat_mixed_training_learns_the_answers_and_logs_the_chat_loss(blocks, tmp_path):
    train, val = blocks
    teacher = tiny_llama(layers=2, seed=9)
    ex = _examples(teacher, n=5)
    ids, labels = (torch.from_numpy(x) for x in answer_batch(ex, PAD, 32))

    def answer_ce(model):
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)).item()

    student = tiny_llama(layers=1, seed=2)
    before = answer_ce(student)
    cfg = TrainConfig(mode="nokd", max_steps=30, batch_size=4, eval_every=30, warmup_steps=2, learning_rate=1e-2,
                      freeze_embeddings=False)
    log = tmp_path / "log.jsonl"
    student, res = train_causal(student, train, val, cfg, chat=ChatMix(ex, 0.5, PAD, 32), log_path=log)
    assert answer_ce(student) < 0.7 * before
    steps = [json.loads(x) for x in log.read_text().splitlines()]
    assert steps and all("chat_ce" in s and "ce" in s for s in steps if "loss" in s)


def test_a_batch_without_room_for_prose_is_refused(blocks):
    from edgedistill.errors import TrainingError

    train, val = blocks
    cfg = TrainConfig(mode="on_policy", on_policy_fraction=0.75, batch_size=4, max_steps=1)
    with pytest.raises(TrainingError, match="cannot hold 3 generated and 2 chat rows"):
        train_causal(tiny_llama(layers=1), train, val, cfg, teacher=tiny_llama(layers=1), prompts=[[4, 5]],
                     chat=ChatMix([ChatExample([4], [5])], 0.5, PAD))


def test_chat_recipe_keys_are_checked():
    LLMDataSpec(chat_ratio=0.3, chat_eval_prompts=32).validate("[data]")
    for kw, key in (({"chat_ratio": 1.0}, "chat_ratio"), ({"chat_ratio": -0.1}, "chat_ratio"),
                    ({"chat_ratio": 0.3, "chat_prompts": 0}, "chat_prompts"),
                    ({"chat_eval_prompts": -1}, "chat_eval_prompts"),
                    ({"chat_answer_tokens": 250, "chat_eval_prompts": 4}, "chat_answer_tokens"),
                    ({"chat_answer_tokens": 0}, "chat_answer_tokens")):
        with pytest.raises(RecipeError, match=f"\\[data\\] key '{key}'"):
            LLMDataSpec(**kw).validate("[data]")
    assert not LLMDataSpec().wants_chat and LLMDataSpec(chat_eval_prompts=8).wants_chat
    LLMDataSpec(block_size=16).validate("[data]")  # no chat asked for: a short block is fine

