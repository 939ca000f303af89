"""Quantization-aware distillation for encoders: the fake-quant student is what the int8-dynamic export runs.

The trap this guards against: a QAT model exported with a scale algorithm other than the one it
trained under loses what QAT bought. Here a tiny random BERT (weights spread so int8 rounding is
visible), trained a few steps through :func:`edgedistill.distill.qat.prepare_int8`, released and
exported by the project's own ONNX path must reproduce the fake-quant PyTorch model's outputs far
closer than it reproduces the fp32 model's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import build_tiny_bert, classifier_teacher

from edgedistill.distill.qat import is_prepared, prepare_int8, release, uint8_per_tensor
from edgedistill.distill.qat_schemes import QAT_SCHEMES, check_export_scheme, get_qat
from edgedistill.errors import RecipeError
from edgedistill.export.schemes import get_scheme
from edgedistill.export.stage import onnx_variants
from edgedistill.models.encode import pool
from edgedistill.models.loading import load_encoder

TEXTS = ["the movie was good", "a terrible awful film with bad acting and a very long story", "ok",
         "great cast, weak plot", "i would not watch it again"]
RECIPE = SimpleNamespace(teacher=SimpleNamespace(pooling="mean", normalize=True, max_length=32),
                         export=SimpleNamespace(opset=17))


def _spread(model, seed: int = 1) -> None:
    """Weights of a trained model's magnitude (a random tiny BERT's are so small that int8 barely shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=g) * 0.15)


def _qat_steps(model, forward, steps: int = 5) -> None:
    """A few optimizer steps through the fake quantization (gradients must reach every weight)."""
    prepare_int8(model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = forward(model).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    release(model)
    model.eval()


def _embed(model, feats):
    return pool(model(**feats).last_hidden_state, feats["attention_mask"], "mean", True)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _ort(path: Path, feats) -> dict:
    from edgedistill.export.onnx import run_session

    return run_session(path, {k: v.numpy() for k, v in feats.items()})


def test_embedding_export_after_qad_matches_fake_quant_model(tmp_path):
    folder = build_tiny_bert(tmp_path / "teacher", layers=2)
    model, tok = load_encoder(folder, attn_implementation="eager")
    _spread(model)
    feats = tok(TEXTS, padding=True, return_tensors="pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _qat_steps(model, lambda m: _embed(m, feats) - 0.1)
    assert not is_prepared(model) and set(model.state_dict()) == set(before)  # same keys: checkpoints, saving
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it trained
    student = tmp_path / "student"
    model.save_pretrained(student, safe_serialization=True)
    tok.save_pretrained(student)

    paths = onnx_variants(student, tmp_path / "export", RECIPE, ["int8-dynamic"])["paths"]
    got = _ort(paths["int8-dynamic"], feats)["sentence_embedding"]
    model, _ = load_encoder(student, attn_implementation="eager")
    with torch.no_grad():
        fp32 = _embed(model, feats).numpy()
        fake = _embed(prepare_int8(model), feats).numpy()
    scheme = get_scheme("int8-dynamic")
    cos = _cos(fake, got)
    assert cos.mean() >= scheme.min_mean_cosine and cos.min() >= scheme.min_cosine  # the parity tolerance
    err_fake, err_fp32 = np.abs(fake - got).max(), np.abs(fp32 - got).max()
    assert err_fp32 > 1e-3  # quantization is visible in this model ...
    assert err_fake < 1e-4 and err_fake < err_fp32 / 20  # ... and the fake-quant model predicts it


def test_classifier_export_after_qad_matches_fake_quant_model(tmp_path):
    folder = classifier_teacher(build_tiny_bert(tmp_path / "enc", layers=2), tmp_path / "clf", scale=5.0)
    from edgedistill.models.classifier import load_classifier

    model, tok = load_classifier(folder)
    _spread(model)
    feats = tok(TEXTS, padding=True, return_tensors="pt")
    _qat_steps(model, lambda m: m(**feats).logits)
    model.save_pretrained(tmp_path / "student", safe_serialization=True)
    tok.save_pretrained(tmp_path / "student")

    paths = onnx_variants(tmp_path / "student", tmp_path / "export", RECIPE, ["int8-dynamic"],
                          task="classification")["paths"]
    got = _ort(paths["int8-dynamic"], feats)["logits"]
    model, _ = load_classifier(tmp_path / "student")
    with torch.no_grad():
        fp32 = model(**feats).logits.numpy()
        fake = prepare_int8(model)(**feats).logits.numpy()
    err_fake, err_fp32 = np.abs(fake - got).max(), np.abs(fp32 - got).max()
    assert err_fp32 > 1e-3
    assert err_fake < 1e-4 * max(1.0, np.abs(got).max()) and err_fake < err_fp32 / 20


def test_fake_quant_is_dynamic_quantize_linear_and_passes_gradients():
    x = torch.tensor([-1.0, -0.2, 0.0, 0.37, 2.0], requires_grad=True)
    y = uint8_per_tensor(x)
    scale = 3.0 / 255
    zp = round(1.0 / scale)
    want = (torch.clamp(torch.round(x.detach() / scale) + zp, 0, 255) - zp) * scale
    assert torch.allclose(y, want) and not torch.equal(y, x.detach())
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(5))  # straight-through
    assert torch.equal(uint8_per_tensor(torch.zeros(3)), torch.zeros(3))  # empty range: no NaN


def test_prepare_leaves_other_layernorms_fp32(tmp_path):
    model, _ = load_encoder(build_tiny_bert(tmp_path / "t", layers=1))
    prepare_int8(model)
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["embeddings.LayerNorm"] == "Uint8LayerNorm"
    assert kinds["embeddings.word_embeddings"] == "Uint8Embedding"
    assert kinds["encoder.layer.0.attention.output.LayerNorm"] == "LayerNorm"  # SkipLayerNormalization: fp32
    assert kinds["encoder.layer.0.intermediate.dense"] == "Int8Linear"


def test_qat_key_is_validated_in_one_line():
    from edgedistill.recipe import DistillSpec

    assert DistillSpec.from_table({"qat": "int8"}).qat == "int8"
    for bad in ("int4", "8da4w"):  # unknown; the causal-LM scheme is not for encoders
        with pytest.raises(RecipeError, match=r"^\[distill\] key 'qat': expected one of 'none', 'int8'") as e:
            DistillSpec.from_table({"qat": bad})
        assert "\n" not in str(e.value)
    with pytest.raises(RecipeError, match="trains for the 'int8-dynamic' export"):
        check_export_scheme("int8", "int8-static", "[export] quantization")
    check_export_scheme("none", "int8-static", "[export] quantization")
    assert get_qat("8da4w", "causal-lm").export_scheme == "et-8da4w"
    for s in QAT_SCHEMES.values():  # every record names a real export scheme
        assert s.export_scheme is None or get_scheme(s.export_scheme).name == s.export_scheme


def test_int8_static_export_uses_the_qat_ranges_and_matches_fake_quant_model(tmp_path):
    from edgedistill.distill.qat_static import CONFIG_KEY, prepare_int8_static
    from edgedistill.distill.qat_static import release as release_static
    from edgedistill.export.quant import QuantContext
    from edgedistill.export.stage import qat_ranges

    folder = build_tiny_bert(tmp_path / "teacher", layers=2)
    model, tok = load_encoder(folder, attn_implementation="eager")
    _spread(model)
    feats = tok(TEXTS, padding=True, return_tensors="pt")
    prepare_int8_static(model)
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["encoder.layer.0.attention.self.query"] == "Linear"  # fused Attention: fp32 in the file
    assert kinds["encoder.layer.0.output.dense"] == "StaticInt8Linear"
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        loss = (_embed(model, feats) - 0.1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    keys = set(model.state_dict())
    release_static(model).eval()
    ranges = getattr(model.config, CONFIG_KEY)
    assert len(ranges) == 7 and "pooler.dense" in ranges  # 3 per block, and the pooler the graph does not use
    assert all(lo <= 0 <= hi and hi > lo for lo, hi in ranges.values())
    assert set(model.state_dict()) == keys - {n for n in keys if n.endswith("act_range")}
    student = tmp_path / "student"
    model.save_pretrained(student, safe_serialization=True)
    tok.save_pretrained(student)

    calib = ["bad", "good"]  # two short sentences: a calibration far from the training distribution
    got = {}
    for label, ranges in (("qat", qat_ranges(student)), ("calibrated", [])):
        paths = onnx_variants(student, tmp_path / label, RECIPE, ["int8-static"],
                              calibration=lambda n, r=ranges: QuantContext(tok, calib, 32, n,
                                                                           activation_ranges=r))["paths"]
        got[label] = _ort(paths["int8-static"], feats)["sentence_embedding"]
    model, _ = load_encoder(student, attn_implementation="eager")
    with torch.no_grad():
        fake = _embed(prepare_int8_static(model).eval(), feats).numpy()  # the ranges come back from config.json
    err_qat, err_calibrated = np.abs(fake - got["qat"]).max(), np.abs(fake - got["calibrated"]).max()
    assert err_qat < 1e-4 and err_qat < err_calibrated / 20  # the file uses training's ranges, not calibration's
    scheme = get_scheme("int8-static")
    assert _cos(fake, got["qat"]).min() >= scheme.min_cosine
