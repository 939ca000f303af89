import pytest
import torch
from llm_tiny import tiny_llama, trained_tiny_llama

from edgedistill.errors import RecipeError
from edgedistill.llm.filled_attention import FilledCacheLM, unsupported_reason
from edgedistill.llm.generate import EagerLM, Sampling, stream
from edgedistill.llm.teacher import load_causal_lm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # fitted to a cyclic text, so greedy output varies (a random tiny model repeats one token)
    return load_causal_lm(trained_tiny_llama(tmp_path_factory.mktemp("pte") / "m"))[0]


class _Filled:
    """FilledCacheLM in eager PyTorch, stepped as the runtimes step a program."""

    def __init__(self, model, n):
        self.m, self.max_cache_len = FilledCacheLM(model, n), n

    def step(self, ids, pos):
        with torch.no_grad():
            return self.m(torch.tensor([ids]), torch.arange(pos, pos + len(ids)))[0, -1]


def test_filled_forward_equals_hf_logits_prefill_and_decode():
    model = tiny_llama(layers=2, seed=3)  # 4 query heads over 2 KV heads: the grouped path
    w = FilledCacheLM(model, 32)
    seq = torch.tensor([[2, 5, 6, 7, 9, 11]])
    with torch.no_grad():
        out = w(seq, torch.arange(6))
        assert out.shape == (1, 6, model.config.vocab_size)  # every position, as the static export returns
        assert torch.allclose(out, model(seq).logits, atol=1e-5)
        for tok in (4, 8, 13):  # one token at a time at the next free slot
            seq = torch.cat([seq, torch.tensor([[tok]])], 1)
            out = w(torch.tensor([[tok]]), torch.tensor([seq.shape[1] - 1]))
            assert torch.allclose(out[0, -1], model(seq).logits[0, -1], atol=1e-5)
        # a new prompt at position 0 overwrites the cache: stale later slots are never read
        fresh = torch.tensor([[3, 4]])
        assert torch.allclose(w(fresh, torch.arange(2)), model(fresh).logits, atol=1e-5)


def test_filled_greedy_equals_eager(tiny):
    prompt = [2, 5, 6, 7, 9]
    eager = list(stream(EagerLM(tiny, 48), prompt, Sampling(max_new_tokens=20)))
    assert len(set(eager)) >= 3
    assert list(stream(_Filled(tiny, 48), prompt, Sampling(max_new_tokens=20))) == eager


def test_unsupported_decoders_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=32))
    assert "not a Llama-style decoder" in unsupported_reason(gpt2)
    assert unsupported_reason(tiny_llama(layers=1)) is None
    partial = tiny_llama(layers=1)
    partial.config.partial_rotary_factor = 0.5  # cos/sin would not span the head: the static export takes it
    assert unsupported_reason(partial) == "partial rotary embedding"
    with pytest.raises(ValueError, match="Llama-style"):
        FilledCacheLM(gpt2, 16)


def test_unknown_attention_is_a_recipe_error(tmp_path):
    from edgedistill.llm.export_pte import export_pte

    with pytest.raises(RecipeError, match="attention"):
        export_pte(tiny_llama(layers=1), tmp_path / "x.pte", "fp32", attention="sliding")
    assert not (tmp_path / "x.pte").exists()


@pytest.mark.e2e  # three ExecuTorch exports: ~1-2 min on a quiet 2-core machine
def test_filled_pte_greedy_equals_eager_and_static(tiny, tmp_path):
    from edgedistill.backends.et import needs_llm_custom_ops
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.llm.generate import PteLM

    prompt = [2, 5, 6, 7, 9]
    eager = list(stream(EagerLM(tiny, 48), prompt, Sampling(max_new_tokens=30)))
    filled = export_pte(tiny, tmp_path / "filled.pte", "fp32", max_cache_len=48, attention="filled")
    static = export_pte(tiny, tmp_path / "static.pte", "fp32", max_cache_len=48, attention="static")
    lm = PteLM(filled, 48)
    assert list(stream(lm, prompt, Sampling(max_new_tokens=30))) == eager
    assert list(stream(lm, prompt, Sampling(max_new_tokens=30))) == eager  # a second generation reuses the cache
    assert list(stream(PteLM(static, 48), prompt, Sampling(max_new_tokens=30))) == eager
    # up to the last cache slot: the bound given to export holds
    assert len(list(stream(lm, prompt, Sampling(max_new_tokens=100)))) == 48 - len(prompt) + 1
    assert not needs_llm_custom_ops(filled)
    q = export_pte(tiny, tmp_path / "q.pte", "8da4w", max_cache_len=48)
    assert q.stat().st_size < filled.stat().st_size
    assert len(list(stream(PteLM(q, 48), prompt, Sampling(max_new_tokens=10)))) == 10


def test_custom_kernel_forward_equals_the_aten_forward_prefill_and_decode():  # aten vs HF: the test above
    pytest.importorskip("executorch")
    from edgedistill.backends.et import load_llm_custom_ops

    load_llm_custom_ops()
    model = tiny_llama(layers=2, seed=3)
    ref, ours = FilledCacheLM(model, 32), FilledCacheLM(model, 32, kernels="llama")
    ids = torch.tensor([[5, 9, 7, 11, 6]])
    with torch.no_grad():
        a, b = ref(ids, torch.arange(5)), ours(ids, torch.arange(5))
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        for pos, tok in enumerate([8, 12, 4], start=5):  # decode steps write at pos and read 0..pos
            step = torch.tensor([[tok]]), torch.tensor([pos])
            torch.testing.assert_close(ours(*step), ref(*step), atol=1e-4, rtol=1e-4)


@pytest.mark.e2e  # one ExecuTorch export, ~30 s
def test_custom_kernel_pte_greedy_equals_eager(tiny, tmp_path):
    from edgedistill.backends.et import needs_llm_custom_ops
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.llm.generate import PteLM

    prompt = [2, 5, 6, 7, 9]
    eager = list(stream(EagerLM(tiny, 48), prompt, Sampling(max_new_tokens=30)))
    custom = export_pte(tiny, tmp_path / "custom.pte", "fp32", max_cache_len=48, attention="custom")
    assert needs_llm_custom_ops(custom)
    lm = PteLM(custom, 48)  # registers the kernels itself
    assert list(stream(lm, prompt, Sampling(max_new_tokens=30))) == eager
    assert list(stream(lm, prompt, Sampling(max_new_tokens=30))) == eager  # the cache is overwritten from 0
    assert len(list(stream(lm, prompt, Sampling(max_new_tokens=100)))) == 48 - len(prompt) + 1
    # the kernels run on torch's pool: during execute it holds one thread (XNNPACK keeps the cores), then is restored
    seen, method = [], lm.method

    class Spy:
        def execute(self, args):
            seen.append(torch.get_num_threads())
            return method.execute(args)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lm.method = Spy()
        assert list(stream(lm, prompt, Sampling(max_new_tokens=3))) == eager[:3]
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_rotate_half_as_a_matrix_is_hf_rotate_half_and_other_rotations_keep_their_helper():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, rotate_half

    from edgedistill.llm.filled_attention import _rotate_half_matrix, _same_rope

    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(x @ _rotate_half_matrix(8), rotate_half(x), rtol=0, atol=0)  # exact
    w = FilledCacheLM(tiny_llama(layers=1), 16)
    assert w._rope == w._linear_rope  # Llama's helper is reproduced, so the matrix form is used
    assert _same_rope(apply_rotary_pos_emb, w._linear_rope, 4, 2, 8)

    def partial(q, k, cos, sin, unsqueeze_dim=1):  # a family that rotates only half of each head
        h = q.shape[-1] // 2
        q2, k2 = apply_rotary_pos_emb(q[..., :h], k[..., :h], cos[..., :h], sin[..., :h], unsqueeze_dim)
        return torch.cat([q2, q[..., h:]], -1), torch.cat([k2, k[..., h:]], -1)

    assert not _same_rope(partial, w._linear_rope, 4, 2, 8)
