import math

import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama

from edgedistill.errors import RecipeError
from edgedistill.llm.losses import TOKEN_LOSSES, chunked_token_loss, topk_kd
from edgedistill.llm.topk_cache import build_topk_cache, shard_key

# Teacher p = [0.5, 0.3, 0.2] over a 3-token vocabulary, cached as its top 2 (tail 0.2 = token 2);
# student q = [0.25, 0.25, 0.5]. With one token in the tail the bucket form is the exact full-vocabulary value.
P = [0.5, 0.3, 0.2]
Q = [0.25, 0.25, 0.5]
T_LOGP = torch.tensor([[math.log(0.5), math.log(0.3)]])
T_IDX = torch.tensor([[0, 1]])
S_LOGITS = torch.log(torch.tensor([Q]))


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_forward_and_reverse_kl_by_hand():
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "forward_kl").item() == pytest.approx(0.218012, abs=1e-5)
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "forward_kl").item() == pytest.approx(kl(P, Q), abs=1e-6)
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "reverse_kl").item() == pytest.approx(0.239278, abs=1e-5)


def test_generalized_jsd_by_hand():
    beta = 0.3
    m = [beta * a + (1 - beta) * b for a, b in zip(P, Q, strict=True)]
    expected = beta * kl(P, m) + (1 - beta) * kl(Q, m)
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "jsd", beta=beta).item() == pytest.approx(expected, abs=1e-6)
    same = torch.log(torch.tensor([P]))
    for name in ("forward_kl", "reverse_kl", "jsd"):
        assert topk_kd(same, T_LOGP, T_IDX, name).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="beta"):
        topk_kd(S_LOGITS, T_LOGP, T_IDX, "jsd", beta=1.0)


def test_renorm_tail_and_temperature_by_hand():
    # renormalised over the two cached tokens: teacher [5/8, 3/8], student [1/2, 1/2]
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "forward_kl", tail="renorm").item() == pytest.approx(
        kl([5 / 8, 3 / 8], [0.5, 0.5]), abs=1e-6)
    # at T = 2 the teacher becomes sqrt(p) renormalised; the loss is scaled by T^2
    r = [math.sqrt(0.5), math.sqrt(0.3)]
    r = [x / sum(r) for x in r]
    assert topk_kd(S_LOGITS, T_LOGP, T_IDX, "forward_kl", temperature=2.0, tail="renorm").item() == pytest.approx(
        4 * kl(r, [0.5, 0.5]), abs=1e-6)


def test_unknown_loss_is_a_recipe_error():
    assert {"forward_kl", "reverse_kl", "jsd"} <= set(TOKEN_LOSSES)
    with pytest.raises(RecipeError, match="unknown token KD loss 'nope'"):
        topk_kd(S_LOGITS, T_LOGP, T_IDX, "nope")


@pytest.mark.parametrize("tail,labels", [("bucket", True), ("renorm", False)])
def test_chunked_equals_unchunked_with_gradients(tail, labels):
    torch.manual_seed(0)
    n, h, v, k = 37, 8, 50, 5
    hidden = torch.randn(n, h, requires_grad=True)
    weight = torch.randn(v, h)
    t_logp, t_idx = torch.log_softmax(torch.randn(n, v), -1).topk(k, -1)
    lab = torch.randint(0, v, (n,)) if labels else None
    ref = topk_kd(hidden @ weight.t(), t_logp, t_idx, "reverse_kl", tail=tail).mean()
    if labels:
        ref = ref + torch.nn.functional.cross_entropy(hidden @ weight.t(), lab)
    (g_ref,) = torch.autograd.grad(ref, hidden)
    parts = chunked_token_loss(hidden, weight, labels=lab, t_logp=t_logp, t_idx=t_idx, loss="reverse_kl",
                               tail=tail, chunk=8)
    total = parts.kd + (parts.ce if labels else 0)
    (g,) = torch.autograd.grad(total, hidden)
    assert total.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g, g_ref, atol=1e-5)


def test_topk_cache_reuse_and_staleness(tmp_path):
    model = tiny_llama(layers=2)
    calls = {"n": 0}
    orig = model.forward

    def counting(*a, **kw):
        calls["n"] += 1
        return orig(*a, **kw)

    model.forward = counting
    blocks = np.random.default_rng(0).integers(0, 30, size=(10, 12)).astype(np.int32)
    kw = dict(teacher_sha="a" * 64, tokenizer_sha="t", k=4, batch_size=4, shard_blocks=4, root=tmp_path)
    first = build_topk_cache(model, blocks, **kw)
    assert first.logp.shape == (10, 12, 4) and first.computed_shards == 3 and calls["n"] == 3
    assert np.all(np.diff(first.logp.astype(np.float32), axis=-1) <= 0)  # sorted, most likely first
    again = build_topk_cache(model, blocks, **kw)
    assert again.computed_shards == 0 and calls["n"] == 3 and np.array_equal(again.idx, first.idx)
    # a damaged shard is recomputed, the others reused
    (first.folder / f"{shard_key(blocks[4:8])}.logp.npy").write_bytes(b"junk")
    fixed = build_topk_cache(model, blocks, **kw)
    assert fixed.computed_shards == 1 and np.array_equal(fixed.logp, first.logp)
    (first.folder / f"{shard_key(blocks[8:])}.json").write_text("{not json")
    assert build_topk_cache(model, blocks, **kw).computed_shards == 1
    # another teacher or another k: a fresh folder, nothing stale is read
    for change in ({"teacher_sha": "b" * 64}, {"k": 3}):
        other = build_topk_cache(model, blocks, **{**kw, **change})
        assert other.folder != first.folder and other.computed_shards == 3
    # other text: none of the shards match
    assert build_topk_cache(model, blocks[:, ::-1].copy(), **kw).computed_shards == 3


def test_topk_cache_reuses_the_shards_a_longer_or_shorter_run_shares(tmp_path):
    model = tiny_llama(layers=2)
    blocks = np.random.default_rng(1).integers(0, 30, size=(12, 8)).astype(np.int32)
    kw = dict(teacher_sha="a" * 64, tokenizer_sha="t", k=4, batch_size=4, shard_blocks=4, root=tmp_path)
    short = build_topk_cache(model, blocks[:8], **kw)  # e.g. max_train_blocks = 8, then all 12
    assert short.computed_shards == 2
    full = build_topk_cache(model, blocks, **kw)
    assert full.computed_shards == 1 and np.array_equal(full.idx[:8], short.idx)
    assert build_topk_cache(model, blocks[:4], **kw).computed_shards == 0
    partial = build_topk_cache(model, blocks[:6], **kw)  # a shard boundary not shared: that shard only
    assert partial.computed_shards == 1
    assert np.allclose(partial.logp.astype(np.float32), full.logp[:6].astype(np.float32), atol=2e-3)
    # files go through temporary names (fileutil.atomic_output): none is left behind
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
