import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError, TrainingError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.generate import EagerLM, Sampling, stream
from edgedistill.llm.losses import topk_kd
from edgedistill.llm.on_policy import (
    generated_positions,
    on_policy_loss,
    sample_continuation,
    text_prompts,
)
from edgedistill.llm.topk_cache import teacher_topk
from edgedistill.llm.train import TrainConfig, train_causal


def test_generated_positions_are_those_predicting_generated_tokens():
    # prompt [a b c] + generated [d e f g]: positions 2..5 predict d..g
    assert generated_positions(3, 7) == slice(2, 6)
    assert list(range(7))[generated_positions(3, 7)] == [2, 3, 4, 5]


def test_greedy_continuation_matches_the_reference_loop():
    model = tiny_llama(layers=2, seed=4)
    prompt = [4, 5, 6]
    seq = sample_continuation(model, prompt, 6, temperature=0.0)
    ref = list(stream(EagerLM(model, 64), prompt, Sampling(max_new_tokens=6)))
    assert seq[:3] == prompt and len(seq) == 9 and seq[3:] == ref


def test_sampling_is_seeded_and_keeps_the_training_flag():
    model = tiny_llama(layers=2, seed=4).train()
    a = sample_continuation(model, [4, 5], 8, 1.0, torch.Generator().manual_seed(1))
    b = sample_continuation(model, [4, 5], 8, 1.0, torch.Generator().manual_seed(1))
    assert a == b and model.training


def test_loss_is_taken_on_generated_positions_only():
    student, teacher = tiny_llama(layers=2, seed=5), tiny_llama(layers=3, seed=6)
    seq, p = [4, 5, 6, 7, 8, 9, 10, 11], 3
    got = on_policy_loss(student, teacher, seq, p, k=4, loss="forward_kl")
    ids = torch.tensor([seq])
    t_logp, t_idx = teacher_topk(teacher, ids, 4)
    logits = student(input_ids=ids).logits[0]
    per_pos = topk_kd(logits, t_logp[0], t_idx[0], "forward_kl")
    assert torch.allclose(got, per_pos[2:7].mean(), atol=1e-5)
    # and not the mean over every position (which would include the prompt's predictions)
    assert not torch.allclose(got, per_pos.mean(), atol=1e-4)


@pytest.fixture(scope="module")
def blocks():
    b = pack_blocks(tiny_text(30, words=40), tiny_tokenizer(), 16)
    return b[:-4], b[-4:]


def test_on_policy_training_runs_without_a_real_text_cache(blocks):
    train, val = blocks
    student, teacher = tiny_llama(layers=2, seed=7), tiny_llama(layers=3, seed=8)
    cfg = TrainConfig(mode="on_policy", on_policy_fraction=1.0, gen_tokens=4, batch_size=2, max_steps=2,
                      eval_every=2, warmup_steps=1)
    _, res = train_causal(student, train, val, cfg, teacher=teacher, prompts=text_prompts(train, 8, 4), top_k=4)
    assert res.steps == 2 and "on_policy_kd" in res.history[-1]
    # 2 sequences of 4 + 4 tokens per step
    assert res.train_tokens == 2 * 2 * 8


def test_on_policy_needs_its_inputs(blocks):
    train, val = blocks
    student = tiny_llama(layers=2)
    cfg = TrainConfig(mode="on_policy", on_policy_fraction=0.5, batch_size=2, max_steps=1)
    with pytest.raises(TrainingError, match="needs the teacher model"):
        train_causal(student, train, val, cfg, prompts=[[4, 5]])
    with pytest.raises(TrainingError, match="top-k targets"):
        train_causal(student, train, val, cfg, teacher=tiny_llama(layers=2), prompts=[[4, 5]])
    with pytest.raises(RecipeError, match="on_policy_fraction"):
        TrainConfig(mode="on_policy", on_policy_fraction=1.5).validate()


def test_text_prompts_are_real_prefixes_fixed_by_seed(blocks):
    train, _ = blocks
    a, b = text_prompts(train, 5, 6, seed=2), text_prompts(train, 5, 6, seed=2)
    assert a == b and all(len(p) == 6 for p in a)
    flat = [r.tolist() for r in train]
    assert all(any(p == row[o : o + 6] for row in flat for o in range(11)) for p in a)
    assert np.asarray(a).dtype.kind == "i"
