"""edgedistill.llm.tail_head: exact kept rows, weighted low-rank tail, KL healing, export contract."""

import pytest
import torch

from edgedistill.errors import ModelError
from edgedistill.llm.tail_head import factorise, heal, hidden_covariance


def _weight(vocab=120, hidden=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, hidden, generator=g)


def test_kept_rows_are_exact_and_full_rank_tail_reproduces_the_head():
    w = _weight()
    h = torch.randn(7, 16)
    head = factorise(w, range(0, 120, 3), rank=16)  # rank = hidden: the tail is exact too
    assert torch.allclose(head(h), h @ w.T, atol=1e-4)
    low = factorise(w, range(0, 120, 3), rank=2)
    kept = torch.arange(0, 120, 3)
    assert torch.allclose(low(h)[:, kept], (h @ w.T)[:, kept], atol=1e-5)  # exact whatever the rank
    assert not torch.allclose(low(h), h @ w.T, atol=1e-2)  # rank 2 of 16 cannot be exact


def test_multiply_adds_count_the_three_matrices():
    head = factorise(_weight(), range(30), rank=4)
    assert head.vocab_size == 120
    assert head.multiply_adds() == 30 * 16 + 4 * 16 + 90 * 4


def test_covariance_weighting_fits_the_directions_the_hidden_states_use():
    """Hidden states living in 3 of 16 directions: a rank-3 tail weighted by their covariance is exact on
    them, the plain SVD of the rows (which spreads its rank over all 16) is not."""
    w = _weight()
    basis = torch.linalg.qr(torch.randn(16, 3))[0]
    h = torch.randn(500, 3) @ basis.T
    cov = hidden_covariance(h)
    weighted, plain = factorise(w, range(10), 3, cov), factorise(w, range(10), 3)
    err = lambda head: (head(h) - h @ w.T).abs().max().item()  # noqa: E731
    assert err(weighted) < 1e-3 < err(plain)


def test_heal_lowers_the_kl_to_the_full_head_and_keeps_kept_rows():
    w = _weight(vocab=200, hidden=16) * 2
    h = torch.randn(2000, 16)
    head = factorise(w, range(0, 200, 4), rank=3, cov=hidden_covariance(h))
    before = head.kept.weight.clone()

    def kl():
        with torch.no_grad():
            t = torch.log_softmax(h @ w.T, -1)
            return torch.nn.functional.kl_div(torch.log_softmax(head(h), -1), t, log_target=True,
                                              reduction="batchmean").item()

    start = kl()
    losses = heal(head, h, w, steps=150, batch=256, lr=1e-2)
    assert len(losses) == 150 and kl() < 0.8 * start
    assert torch.equal(head.kept.weight, before) and head.kept.weight.requires_grad  # flag as it was
    healed = kl()
    heal(head, h, w, steps=50, batch=256, lr=1e-2, train_kept=True)
    assert not torch.equal(head.kept.weight, before) and kl() < healed


def test_a_tail_head_student_exports_and_its_pte_matches_eager(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgedistill.backends import et
    from edgedistill.llm.export_pte import export_pte

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg).eval()
    m.lm_head = factorise(m.get_output_embeddings().weight, range(0, 300, 2), 32)
    m.config.tie_word_embeddings = False
    ids = torch.randint(0, 300, (1, 10))
    path = export_pte(m, tmp_path / "tail.pte", "fp32", max_cache_len=32, attention="filled")
    out = torch.as_tensor(et.open_lm(str(path), 32, 1).step(ids[0].tolist(), 0)).reshape(-1)[-300:]
    with torch.no_grad():
        ref = m(ids).logits[0, -1]
    assert torch.allclose(out, ref, atol=1e-4)
    assert export_pte(m, tmp_path / "tail-q.pte", "8da4w", max_cache_len=32).stat().st_size > 0
    m.lm_head = factorise(m.lm_head.kept.weight.new_zeros(300, 64), range(10), 8)  # int4 groups of 32 need 32 | 8
    with pytest.raises(ModelError, match=r"lm_head.up \(8\)"):
        export_pte(m, tmp_path / "odd.pte", "8da4w", max_cache_len=32)
