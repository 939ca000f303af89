"""Quantization-aware distillation of a causal LM for et-8da4w: torchao's fake quantization of the export's
own configs, trained with the KD loss, released to plain modules, exported; the .pte must reproduce the
fake-quant model's logits far closer than the fp32 model's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.qat import output_weight, prepare_8da4w
from edgedistill.llm.topk_cache import build_topk_cache
from edgedistill.llm.train import TrainConfig, train_causal


def _spread(model, seed: int = 1) -> None:
    """Trained-model-sized weights (a random tiny Llama's are so small that int4 rounding barely shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def qad_student(tmp_path_factory):
    tok = tiny_tokenizer()
    blocks = pack_blocks(tiny_text(40, words=40), tok, 16)
    train, val = blocks[:-6], blocks[-6:]
    teacher = tiny_llama(layers=2, hidden=64, ffn=128, seed=1)
    topk = build_topk_cache(teacher, train, teacher_sha="t" * 64, tokenizer_sha="tok", k=8,
                            root=tmp_path_factory.mktemp("topk"))
    student = tiny_llama(layers=2, hidden=64, ffn=128, seed=2)
    _spread(student)
    before = copy.deepcopy(student.state_dict())
    cfg = TrainConfig(mode="kd", ce_weight=0.5, learning_rate=3e-3, warmup_steps=1, max_steps=6, batch_size=4,
                      eval_every=3, chunk=32, freeze_embeddings=False, qat="8da4w")
    student, res = train_causal(student, train, val, cfg, topk=topk)
    return student, before, res


def test_training_releases_plain_modules_with_trained_weights(qad_student):
    student, before, res = qad_student
    assert type(student.lm_head) is torch.nn.Linear and type(student.get_input_embeddings()) is torch.nn.Embedding
    assert not student.config.tie_word_embeddings  # untied as the export unties it
    assert set(student.state_dict()) == set(before)
    assert not torch.equal(student.lm_head.weight, before["lm_head.weight"])  # the fake-quant lm_head trained
    assert res.steps == 6


def test_output_weight_is_the_lm_heads_fake_quantization(qad_student):
    model = prepare_8da4w(copy.deepcopy(qad_student[0]))
    hidden = torch.randn(5, model.config.hidden_size)
    h, w = output_weight(model, hidden)
    assert torch.allclose(h @ w.T, model.lm_head(hidden), atol=1e-5)  # what the chunked loss computes
    assert not torch.allclose(w, model.lm_head.weight)


def test_pte_after_qad_matches_fake_quant_model(qad_student, tmp_path):
    from edgedistill.llm.export_pte import export_pte
    from edgedistill.llm.generate import PteLM

    student = qad_student[0]
    pte = PteLM(export_pte(student, tmp_path / "q.pte", "8da4w", max_cache_len=32), 32)
    fake = prepare_8da4w(copy.deepcopy(student)).eval()
    seq = [2, 5, 6, 7, 9, 11, 4, 8]
    got = [pte.step(seq[:5], 0)] + [pte.step([t], i) for i, t in enumerate(seq[5:], start=5)]  # prefill, decode
    with torch.no_grad():
        ids = torch.tensor([seq])
        want = fake(input_ids=ids).logits[0, 4:].numpy()
        fp32 = student(input_ids=ids).logits[0, 4:].numpy()
    got = np.stack(got)
    err_fake, err_fp32 = np.abs(got - want).max(), np.abs(got - fp32).max()
    print(f"pte vs fake-quant {err_fake:.4g}, pte vs fp32 {err_fp32:.4g}, logit scale {np.abs(want).max():.3g}")
    assert err_fp32 > 0.05  # int4 rounding is visible here ...
    assert err_fake < err_fp32 / 5 and err_fake < 0.05 * np.abs(want).max()  # ... and the fake-quant model has it
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.75


def test_qat_key_for_causal_lms():
    TrainConfig(qat="8da4w").validate()
    with pytest.raises(RecipeError, match=r"^\[distill\] key 'qat': expected one of 'none', '8da4w'"):
        TrainConfig(qat="int8").validate()


def test_llm_recipe_qat_needs_its_export_scheme(tmp_path):
    from edgedistill.llm.recipe import load_llm_recipe

    path = tmp_path / "r.toml"
    head = 'name = "t"\nkind = "llm"\n[teacher]\npath = "x"\n[distill]\nqat = "8da4w"\n[export]\n'
    path.write_text(head + 'schemes = ["et-fp32", "8da4w"]\n')
    assert load_llm_recipe(path).distill.train_config().qat == "8da4w"
    path.write_text(head + 'schemes = ["et-fp32"]\n')
    with pytest.raises(RecipeError, match="trains for the 'et-8da4w' export, but \\[export\\] schemes") as e:
        load_llm_recipe(path)
    assert "\n" not in str(e.value)
    path.write_text(head.replace('"8da4w"\n[export]', '"int4"\n[export]') + 'schemes = ["et-8da4w"]\n')
    with pytest.raises(RecipeError, match="key 'qat': expected one of 'none', '8da4w'"):
        load_llm_recipe(path)


def test_llm_qad_benchmark_scores_blocks_as_the_export_quantizes(qad_student):
    """benchmarks/llm_qad.py: per-block NLLs average to the 8da4w test perplexity; the verdict needs the
    bootstrap interval below zero and, with seeds, a gain larger than the PTQ arm's seed spread."""
    import math

    from conftest import load_benchmark

    from edgedistill.llm.evaluate import evaluate_lm

    bench = load_benchmark("llm_qad")
    tok = tiny_tokenizer()
    blocks = pack_blocks(tiny_text(12, words=40, seed=7), tok, 16)[:5]
    q = prepare_8da4w(copy.deepcopy(qad_student[0]))
    nll = bench.block_nll(q, blocks)
    assert nll.shape == (len(blocks),)
    assert math.exp(nll.mean()) == pytest.approx(evaluate_lm(q, blocks).ppl, rel=1e-4)

    lower = np.array([4.0, 4.1, 3.9, 4.2, 4.0, 4.05])

    def run(arm, seed, ppl, nll):
        return {"arm": arm, "seed": seed, "steps": 10, "distill_seconds": 1.0, "ppl_float": 50.0,
                "ppl_8da4w": ppl, "agreement_8da4w": 0.4, "_nll": nll}

    runs = [run("ptq", 0, 60.0, lower + 0.1), run("qad", 0, 55.0, lower)]
    block = bench.summarise(runs, teacher_ppl=40.0)
    assert block["ppl_8da4w_delta"] == pytest.approx(-5.0) and block["seed_noise_ppl_8da4w"] is None
    assert block["test_bootstrap_seed0"]["ci95"][1] < 0 and block["qad_better_beyond_noise"] is True
    assert "_nll" not in block["runs"][0]
    # a second PTQ seed 8 ppl away: the 5-ppl gain is inside the seed noise
    noisy = bench.summarise(runs + [run("ptq", 1, 68.0, lower + 0.2), run("qad", 1, 63.0, lower + 0.1)], 40.0)
    assert noisy["seed_noise_ppl_8da4w"] == pytest.approx(8.0) and noisy["qad_better_beyond_noise"] is False
    # a mixed per-block difference: the interval straddles zero
    mixed = bench.summarise([run("ptq", 0, 60.0, lower), run("qad", 0, 59.0, lower + np.array([.3, -.3] * 3))], 40.)
    assert mixed["qad_better_beyond_noise"] is False


def _qad_block() -> dict:
    """A finished llm_qad.py block (the stored run's figures)."""
    arm = {"ppl_8da4w": 204.5, "agreement_8da4w": 0.32, "ppl_float": 133.7, "chat_nonempty_rate_8da4w": 1.0,
           "chat_agreement_8da4w": 0.46, "chat_rougeL_vs_teacher_8da4w": 0.23}
    return {"export_scheme": "et-8da4w", "steps": 200, "seeds": 1, "teacher_ppl": 54.1, "command": "x",
            "measured": "2026-12-06", "ptq": arm, "qad": {**arm, "ppl_8da4w": 155.8}, "ppl_8da4w_delta": -48.7,
            "test_bootstrap_seed0": {"ci95": [-56.4, -42.0]}, "seed_noise_ppl_8da4w": None,
            "qad_better_beyond_noise": True, "runs": [{"arm": "ptq"}],
            "examples_seed0": {"ptq": [{"prompt": "a|b", "teacher": "t", "student": ""}],
                               "qad": [{"prompt": "a|b", "teacher": "t", "student": "q"}]}}


def test_llm_qad_block_joins_the_stored_llm_headline(tmp_path):
    import json

    from conftest import load_benchmark

    bench = load_benchmark("llm_qad")
    stored = tmp_path / "llm.json"
    stored.write_text(json.dumps({"headline": {"teacher_ppl": 54.1, "nokd_ppl": 103.1}, "runs": []}))
    block = {**_qad_block(), "ppl_8da4w_delta": -3.0}
    bench.write_headline(block, stored)
    head = json.loads(stored.read_text())["headline"]
    assert head["teacher_ppl"] == 54.1 and head["nokd_ppl"] == 103.1
    assert head["qad"]["ppl_8da4w_delta"] == -3.0 and "runs" not in head["qad"]
    assert "llm_qad.py" in head["qad"]["source"]
    assert (tmp_path / "llm_qad.md").is_file()  # the markdown beside llm.json
    # chat keys only where llm.py's own run left none, with their source
    assert head["chat_nonempty_rate"] == 1.0 and head["chat_rougeL_vs_teacher"] == 0.23 and "PTQ" in head["chat_source"]
    stored.write_text(json.dumps({"headline": {"chat_nonempty_rate": 0.97, "chat_rougeL_vs_teacher": 0.3}}))
    bench.write_headline(block, stored)
    head = json.loads(stored.read_text())["headline"]
    assert head["chat_nonempty_rate"] == 0.97 and "chat_source" not in head


def test_llm_qad_markdown_shows_both_arms_and_the_verdict():
    from conftest import load_benchmark

    bench = load_benchmark("llm_qad")
    md = bench.markdown(_qad_block())
    assert "| QAD (qat = '8da4w') | 155.8 | 0.320 | 133.7 | 100% | 0.460 | 0.230 |" in md
    assert "**-48.7** (test-block bootstrap 95% interval [-56.4, -42.0]; one seed per arm" in md and "**yes**" in md
    assert "| a/b | t | *(empty)* | q |" in md
