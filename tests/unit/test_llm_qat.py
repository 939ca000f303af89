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
