import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.evaluate import evaluate_lm
from edgedistill.llm.student import (
    build_student,
    choose_layers,
    evenly_spaced,
    layer_importance,
    plan_student,
    skipping,
)


@pytest.fixture(scope="module")
def calib():
    return pack_blocks(tiny_text(20), tiny_tokenizer(), 16)[:8]


def test_choose_and_even_maps():
    assert choose_layers([0.1, 5.0, 0.2, 3.0, 0.0], 2) == [1, 3]
    assert evenly_spaced(30, 6) == [0, 6, 12, 17, 23, 29]
    with pytest.raises(RecipeError, match="num_layers"):
        choose_layers([1.0, 2.0], 3)


def test_skipping_matches_a_built_student(calib):
    teacher = tiny_llama(layers=4)
    ids = torch.from_numpy(calib[:2].astype(np.int64))
    with skipping(teacher, {1, 2}):
        skipped = teacher(input_ids=ids, use_cache=False).logits
    assert teacher.config.num_hidden_layers == 4 and len(teacher.model.layers) == 4
    student = build_student(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2
    assert torch.allclose(student(input_ids=ids).logits, skipped, atol=1e-5)
    assert student.model.embed_tokens.weight.data_ptr() == student.lm_head.weight.data_ptr()  # still tied


@pytest.mark.parametrize("method", ["ppl", "cosine"])
def test_layer_importance_scores_every_layer(calib, method):
    teacher = tiny_llama(layers=4)
    # Make layer 2 a no-op (zero output projections): skipping it changes nothing, so it scores lowest.
    with torch.no_grad():
        teacher.model.layers[2].self_attn.o_proj.weight.zero_()
        teacher.model.layers[2].mlp.down_proj.weight.zero_()
    scores = layer_importance(teacher, calib, method)
    assert len(scores) == 4
    assert min(range(4), key=lambda i: scores[i]) == 2 and abs(scores[2]) < 1e-6


def test_iterative_cosine_drops_the_dead_layers(calib):
    teacher = tiny_llama(layers=5)
    with torch.no_grad():
        for i in (1, 3):
            teacher.model.layers[i].self_attn.o_proj.weight.zero_()
            teacher.model.layers[i].mlp.down_proj.weight.zero_()
    student, plan = plan_student(teacher, calib, num_layers=3, importance="cosine-iterative")
    assert plan.layers == [0, 2, 4] and student.config.num_hidden_layers == 3
    assert teacher.config.num_hidden_layers == 5 and len(teacher.model.layers) == 5


def test_width_pruning_keeps_the_important_channels(calib):
    teacher = tiny_llama(layers=2, ffn=64)
    with torch.no_grad():  # only channels 0..15 of layer 0's MLP carry anything
        teacher.model.layers[0].mlp.down_proj.weight[:, 16:] = 0
    student, plan = plan_student(teacher, calib, layers=[0, 1], intermediate_size=16)
    assert plan.intermediate_size == 16 and student.config.intermediate_size == 16
    assert torch.equal(student.model.layers[0].mlp.gate_proj.weight, teacher.model.layers[0].mlp.gate_proj.weight[:16])
    t = evaluate_lm(teacher, calib)
    # layer 1 lost channels, so the model changed, but layer 0's MLP is exactly the teacher's
    x = torch.randn(3, 32)
    assert torch.allclose(student.model.layers[0].mlp(x), teacher.model.layers[0].mlp(x), atol=1e-5)
    assert evaluate_lm(student, calib).tokens == t.tokens
    with pytest.raises(RecipeError, match="intermediate_size"):
        build_student(teacher, [0], intermediate_size=999)
    with pytest.raises(RecipeError, match="layers"):
        build_student(teacher, [0, 0])
