import numpy as np
import pytest
from llm_tiny import tiny_tokenizer, trained_tiny_llama

from edgedistill.errors import DataError, RecipeError
from edgedistill.llm.generate import EagerLM, Sampling, generate_text, pick, stream
from edgedistill.llm.teacher import load_causal_lm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # fitted to a cyclic text, so greedy output varies (a random tiny model repeats one token)
    return load_causal_lm(trained_tiny_llama(tmp_path_factory.mktemp("gen") / "m"))


def test_pick_greedy_top_k_top_p():
    logits = np.array([1.0, 3.0, 2.0, -1.0], dtype=np.float32)
    gen = np.random.default_rng(0)
    assert pick(logits, Sampling(), gen) == 1
    # top_k = 1 and a tiny top_p both reduce sampling to the argmax
    assert {pick(logits, Sampling(temperature=1.0, top_k=1), gen) for _ in range(20)} == {1}
    assert {pick(logits, Sampling(temperature=1.0, top_p=0.01), gen) for _ in range(20)} == {1}
    # top_k = 2 never leaves the two best tokens, and reaches both
    assert {pick(logits, Sampling(temperature=5.0, top_k=2), gen) for _ in range(200)} == {1, 2}
    # nucleus: probabilities 0.5 / 0.3 / 0.2; top_p 0.7 keeps the first two (0.5 < 0.7, 0.8 >= 0.7)
    probs = np.log(np.array([0.2, 0.5, 0.3]))
    assert {pick(probs, Sampling(temperature=1.0, top_p=0.7), gen) for _ in range(300)} == {1, 2}
    assert logits.tolist() == [1.0, 3.0, 2.0, -1.0]  # the caller's logits are not modified
    # sampled draws follow the softmax: token 1 of [0.2, 0.5, 0.3] about half the time
    draws = [pick(probs, Sampling(temperature=1.0), np.random.default_rng(i)) for i in range(2000)]
    assert abs(draws.count(1) / 2000 - 0.5) < 0.05


def test_stop_tokens_max_tokens_and_context(tiny):
    model, _ = tiny
    lm = EagerLM(model, max_cache_len=12)
    out = list(stream(lm, [2, 5, 6], Sampling(max_new_tokens=5)))
    assert len(out) == 5
    assert list(stream(lm, [2, 5, 6], Sampling(max_new_tokens=5), stop_ids={out[0]})) == []
    assert len(list(stream(lm, [2, 5, 6], Sampling(max_new_tokens=50)))) == 12 - 3 + 1
    with pytest.raises(DataError, match="prompt is 12 tokens.*context holds 12"):
        list(stream(lm, list(range(4, 16)), Sampling()))
    with pytest.raises(DataError, match="empty prompt"):
        list(stream(lm, [], Sampling()))
    with pytest.raises(DataError, match="empty prompt"):
        generate_text(lm, tiny_tokenizer(), "   ", Sampling())


@pytest.mark.e2e  # two ExecuTorch exports: ~30 s on a quiet 2-core machine, minutes on a busy one
def test_pte_greedy_equals_eager_greedy(tiny, tmp_path):
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.llm.generate import PteLM

    model, _ = tiny
    prompt = [2, 5, 6, 7, 9]
    eager = list(stream(EagerLM(model, 48), prompt, Sampling(max_new_tokens=30)))
    assert len(set(eager)) >= 3  # a meaningful comparison, not one repeated token
    pte = export_pte(model, tmp_path / "fp32.pte", "fp32", max_cache_len=48)
    assert list(stream(PteLM(pte, 48), prompt, Sampling(max_new_tokens=30))) == eager
    q = export_pte(model, tmp_path / "q.pte", "8da4w", max_cache_len=48)
    assert q.stat().st_size < pte.stat().st_size
    assert len(list(stream(PteLM(q, 48), prompt, Sampling(max_new_tokens=10)))) == 10
    with pytest.raises(RecipeError, match="scheme"):
        export_pte(model, tmp_path / "x.pte", "int3")
