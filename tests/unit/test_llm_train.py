import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError, TrainingError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.losses import topk_kd
from edgedistill.llm.student import build_student
from edgedistill.llm.topk_cache import build_topk_cache
from edgedistill.llm.train import TrainConfig, train_causal


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = tiny_tokenizer()
    blocks = pack_blocks(tiny_text(60, words=40), tok, 16)
    train, val = blocks[:-8], blocks[-8:]
    teacher = tiny_llama(layers=4, seed=1)
    # A teacher that knows the text: a few hundred quick CE steps on the cyclic corpus.
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    teacher.train()
    for i in range(40):
        ids = torch.from_numpy(train[(i * 8) % (len(train) - 8):][:8].astype(np.int64))
        loss = teacher(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()
    root = tmp_path_factory.mktemp("topk")
    kw = dict(teacher_sha="t" * 64, tokenizer_sha="tok", k=8, root=root)
    return teacher, train, val, build_topk_cache(teacher, train, **kw), build_topk_cache(teacher, val, **kw)


def _val_kd(student, val, val_topk):
    with torch.no_grad():
        logits = student(input_ids=torch.from_numpy(val.astype(np.int64)), use_cache=False).logits
        n = logits.shape[0] * logits.shape[1]
        return topk_kd(logits.reshape(n, -1), torch.from_numpy(np.asarray(val_topk.logp)).reshape(n, -1),
                       torch.from_numpy(np.asarray(val_topk.idx)).reshape(n, -1)).mean().item()


@pytest.mark.parametrize("loss", ["forward_kl", "jsd"])
def test_kd_reduces_the_kd_loss_and_keeps_the_best(setup, loss):
    teacher, train, val, topk, val_topk = setup
    student = build_student(teacher, [0, 3])
    before = _val_kd(student, val, val_topk)
    cfg = TrainConfig(mode="kd", loss=loss, learning_rate=3e-3, warmup_steps=2, max_steps=20, batch_size=8,
                      eval_every=10, chunk=64, freeze_embeddings=False)
    student, res = train_causal(student, train, val, cfg, topk=topk, val_teacher_top1=val_topk.idx[:, :, 0])
    after = _val_kd(student, val, val_topk)
    assert after < 0.8 * before
    assert res.steps == 20 and res.tokens_per_s > 0 and res.train_tokens == 20 * 8 * 16
    assert res.best_val["ppl"] == min(h["ppl"] for h in res.history)
    assert res.best_val["agreement"] > res.history[0]["agreement"]


def test_nokd_trains_on_hard_labels(setup):
    teacher, train, val, _, _ = setup
    student = build_student(teacher, [0, 3])
    cfg = TrainConfig(mode="nokd", learning_rate=3e-3, warmup_steps=2, max_steps=20, batch_size=8, eval_every=10)
    student, res = train_causal(student, train, val, cfg)
    assert res.best_val["ppl"] < res.history[0]["ppl"] and res.best_val["agreement"] is None


def test_nan_stops_with_a_clear_error(setup):
    teacher, train, val, topk, _ = setup
    student = build_student(teacher, [0, 3])
    with torch.no_grad():
        student.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="diverged at step 1.*learning_rate"):
        train_causal(student, train, val, TrainConfig(max_steps=3, batch_size=4), topk=topk)


def test_bad_settings_and_mismatched_targets(setup):
    teacher, train, val, topk, _ = setup
    student = build_student(teacher, [0])
    with pytest.raises(RecipeError, match="'mode'"):
        train_causal(student, train, val, TrainConfig(mode="sometimes"))
    with pytest.raises(TrainingError, match="needs the teacher's top-k"):
        train_causal(student, train, val, TrainConfig())
    with pytest.raises(TrainingError, match="rebuild the cache"):
        train_causal(student, train[:-1], val, TrainConfig(), topk=topk)
    small = tiny_llama(layers=1)
    small.resize_token_embeddings(5)
    with pytest.raises(TrainingError, match="shared tokenizer"):
        train_causal(small, train, val, TrainConfig(), topk=topk)
