import copy

import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.progressive import check_stages, model_hash, progressive_shrink
from edgedistill.llm.topk_cache import build_topk_cache
from edgedistill.llm.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    blocks = pack_blocks(tiny_text(40, words=40), tiny_tokenizer(), 16)
    return blocks[:-8], blocks[-8:]


def _chain(data, tmp_path, stage_teacher, stages=(5, 3, 2)):
    train, val = data
    teacher = tiny_llama(layers=6, seed=3)
    seen = []

    def topk_for(model, sha, blocks):
        seen.append(sha)
        return build_topk_cache(model, blocks, teacher_sha=sha, tokenizer_sha="tok", k=4, root=tmp_path)

    cfg = TrainConfig(max_steps=2, batch_size=4, eval_every=2, warmup_steps=1, learning_rate=1e-3)
    chain = progressive_shrink(teacher, "T" * 64, list(stages), calib=train[:4], train=train, val=val, test=val,
                               cfg=cfg, stage_steps=2, stage_teacher=stage_teacher, topk_for=topk_for)
    return teacher, chain, seen


def test_each_stage_has_its_layer_count_and_its_own_teacher_cache(data, tmp_path):
    teacher, chain, seen = _chain(data, tmp_path, "previous")
    assert [len(r.layers) for r in chain.stages] == [5, 3, 2]
    assert chain.student.config.num_hidden_layers == 2 and len(chain.student.model.layers) == 2
    # each stage keeps a subset of the previous one's layers, in original-teacher numbering
    for a, b in zip(chain.stages, chain.stages[1:], strict=False):
        assert set(b.layers) <= set(a.layers)
    assert chain.layers == chain.stages[-1].layers and chain.plan.layers == chain.layers
    # stage 1 is taught by the teacher, stage 2 by stage 1: two different cache keys, two folders
    assert seen[0] == "T" * 64 and len(seen) == 2 and seen[1] != seen[0]
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    # the last stage is taught by stage 2 (a trained 3-layer model), identified by its weights' hash
    assert chain.teacher.config.num_hidden_layers == 3 and chain.teacher_sha == model_hash(chain.teacher)
    assert all(r.ppl_after is not None for r in chain.stages[:-1]) and chain.stages[-1].ppl_after is None


def test_stage_teacher_teacher_keeps_the_original(data, tmp_path):
    teacher, chain, seen = _chain(data, tmp_path, "teacher", (4, 2))
    assert seen == ["T" * 64] and chain.teacher is teacher and chain.teacher_sha == "T" * 64


def test_model_hash_follows_the_weights():
    a = tiny_llama(layers=2)
    b = copy.deepcopy(a)
    assert model_hash(a) == model_hash(b)
    with torch.no_grad():
        b.model.layers[0].mlp.up_proj.weight[0, 0] += 1e-3
    assert model_hash(a) != model_hash(b)


@pytest.mark.parametrize("stages,n,msg", [
    ([15, 20], None, "strictly decreasing"), ([20, 20], None, "strictly decreasing"), ([3, 0], None, ">= 1"),
    ([], None, "non-empty"), ([30, 15], 30, "fewer layers than the teacher's 30")])
def test_bad_stages(stages, n, msg):
    with pytest.raises(RecipeError, match=msg):
        check_stages(stages, n)


def test_check_stages_accepts_a_decreasing_chain():
    check_stages([20, 15, 6], 30)
    assert np.all(np.diff([20, 15, 6]) < 0)
