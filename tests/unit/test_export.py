import json
import shutil

import numpy as np
import pytest

from edgedistill.errors import ModelError
from edgedistill.export.bundle import verify_bundle, write_bundle
from edgedistill.export.onnx import export_onnx, onnx_embedder, optimize
from edgedistill.export.parity import check_parity, failure_message
from edgedistill.export.quant import get_scheme
from edgedistill.models.encode import batched_embed, embed_torch
from edgedistill.models.loading import load_encoder
from edgedistill.quality.metrics import probe_fit
from edgedistill.targets import load_target

TEXTS = ["the movie was great", "a dull and boring film", "this plot is really clumsy", "so charming and funny",
         "the cast was superb but the ending was painful and tedious"] * 4


@pytest.fixture(scope="module")
def exported(tiny_teacher, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    info = export_onnx(tiny_teacher, d / "raw.onnx", "mean", True, 32)
    fused = optimize(d / "raw.onnx", d / "opt.onnx", "bert", info["num_heads"], info["hidden_size"],
                     info["num_layers"])
    get_scheme("int8-dynamic").fn(d / "opt.onnx", d / "int8.onnx")
    return d, info, fused


def test_fp32_export_matches_pytorch_with_dynamic_axes(exported, tiny_teacher):
    d, info, fused = exported
    assert info["max_abs_diff_vs_pytorch"] < 1e-4
    assert info["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert fused["attention_fused"], fused
    model, tok = load_encoder(tiny_teacher)
    ref = embed_torch(model, tok, TEXTS, 32)
    for name in ("raw.onnx", "opt.onnx"):
        # batches of different sizes and lengths through the same graph
        got = batched_embed(onnx_embedder(d / name, 1), tok, TEXTS, 32, batch_size=3)
        assert np.max(np.abs(got - ref)) < 1e-4


def test_no_skip_layernorm_in_any_session(exported, tmp_path):
    """The slow SkipLayerNormalization CPU kernel is avoided in the file and after a default session's own
    fusions (an app opening the bundle with plain onnxruntime settings gets the fast graph too)."""
    import onnx
    import onnxruntime as ort

    d, info, fused = exported
    assert fused["residual_sums"] == 2 * info["num_layers"], fused
    for name in ("opt.onnx", "int8.onnx"):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"session-{name}")
        ort.InferenceSession(str(d / name), so, providers=["CPUExecutionProvider"])
        ops = {n.op_type for n in onnx.load(str(tmp_path / f"session-{name}")).graph.node}
        assert "SkipLayerNormalization" not in ops and "Sum" in ops and "LayerNormalization" in ops, (name, ops)


def test_int8_is_smaller_and_passes_parity(exported, tiny_teacher):
    d, _, _ = exported
    assert (d / "int8.onnx").stat().st_size < 0.6 * (d / "opt.onnx").stat().st_size
    model, tok = load_encoder(tiny_teacher)
    ref = embed_torch(model, tok, TEXTS, 32)
    got = batched_embed(onnx_embedder(d / "int8.onnx", 1), tok, TEXTS, 32)
    rep = check_parity(ref, got, get_scheme("int8-dynamic"), load_target("phone"))
    assert rep.passed, rep.failures
    assert 0.9 < rep.mean_cosine <= 1.0 + 1e-6


def test_parity_gate_fails_on_drift_and_names_the_next_scheme():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 8))
    noisy = ref + rng.normal(scale=2.0, size=ref.shape)
    rep = check_parity(ref, noisy, get_scheme("int8-dynamic"))
    assert not rep.passed and any("mean cosine" in f for f in rep.failures)
    msg = failure_message(rep, "phone")
    assert "no bundle written" in msg and "--quant fp32" in msg and "\n" not in msg
    for scheme in ("int8-static", "int4-weight"):
        rep = check_parity(ref, noisy, get_scheme(scheme))
        assert not rep.passed and "try --quant int8-dynamic" in failure_message(rep, "watch")


def test_parity_gate_checks_probe_accuracy_drop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] > 0).astype(int)
    probe = probe_fit(x[:150], y[:150], x[150:], y[150:])
    flipped = x.copy()
    flipped[:, 0] *= -1  # cosine stays high-ish in 4-d, predictions flip
    rep = check_parity(x, flipped, get_scheme("fp32"), probe=probe, probe_idx=np.arange(150, 200),
                       probe_labels=y[150:])
    assert rep.probe_drop > 0.5 and any("probe accuracy drop" in f for f in rep.failures)


def test_bundle_roundtrip_and_tamper_detection(exported, tiny_teacher, tmp_path):
    d, _, _ = exported
    b = write_bundle(tmp_path / "bundle", d / "int8.onnx", tiny_teacher, {"task": "t", "quantization": {"scheme": "x"},
                                                                          "target": {"name": "phone"}})
    m = verify_bundle(b)
    assert set(m["files"]) >= {"model.onnx", "tokenizer.json", "tokenizer_config.json"}
    assert m["files"]["model.onnx"]["bytes"] == (d / "int8.onnx").stat().st_size
    # tampered model
    t = tmp_path / "t1"
    shutil.copytree(b, t)
    with open(t / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256 does not match"):
        verify_bundle(t)
    # missing and extra files, unknown format
    t2 = tmp_path / "t2"
    shutil.copytree(b, t2)
    (t2 / "tokenizer_config.json").unlink()
    with pytest.raises(ModelError, match="'tokenizer_config.json' listed in the manifest is missing"):
        verify_bundle(t2)
    t3 = tmp_path / "t3"
    shutil.copytree(b, t3)
    (t3 / "evil.py").write_text("print(1)")
    with pytest.raises(ModelError, match="'evil.py' is not listed"):
        verify_bundle(t3)
    t4 = tmp_path / "t4"
    shutil.copytree(b, t4)
    man = json.loads((t4 / "manifest.json").read_text())
    man["format_version"] = 99
    (t4 / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match="format 99 is not supported"):
        verify_bundle(t4)


def test_corrupt_onnx_file_is_a_model_error(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        onnx_embedder(p)


@pytest.mark.parametrize("name", ["int8-static", "int4-weight", "fp16"])
def test_new_schemes_run_and_pass_their_own_parity_gate(exported, tiny_teacher, name):
    from edgedistill.export.quant import QuantContext

    d, info, _ = exported
    model, tok = load_encoder(tiny_teacher)
    ctx = QuantContext(tok, TEXTS[:10], 32, info["input_names"], batch_size=4)
    get_scheme(name).fn(d / "opt.onnx", d / f"{name}.onnx", ctx)
    got = batched_embed(onnx_embedder(d / f"{name}.onnx", 1), tok, TEXTS, 32)
    rep = check_parity(embed_torch(model, tok, TEXTS, 32), got, get_scheme(name))
    assert rep.passed, (name, rep.failures)
    import onnx

    ops = {n.op_type for n in onnx.load(str(d / f"{name}.onnx")).graph.node}
    expected = {"int8-static": "QuantizeLinear", "int4-weight": "MatMulNBits", "fp16": "Cast"}[name]
    assert expected in ops, ops
    if name == "int8-static":  # activations really quantised, not only weights
        assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(d / f"{name}.onnx")).graph.node) >= 2


def test_static_scheme_needs_calibration_and_fingerprints_it(exported, tiny_teacher):
    from edgedistill.export.quant import QuantContext

    d, info, _ = exported
    with pytest.raises(ModelError, match="int8-static needs calibration sentences"):
        get_scheme("int8-static").fn(d / "opt.onnx", d / "x.onnx", None)
    _, tok = load_encoder(tiny_teacher)
    a = QuantContext(tok, TEXTS[:4], 32, info["input_names"])
    assert a.fingerprint() != QuantContext(tok, TEXTS[:5], 32, info["input_names"]).fingerprint()
    feeds = list(QuantContext(tok, TEXTS[:5], 32, info["input_names"], batch_size=2).feeds())
    assert len(feeds) == 3 and set(feeds[0]) == set(info["input_names"]) and feeds[0]["input_ids"].dtype == np.int64


def test_fp16_is_refused_on_a_core_without_fp16():
    from edgedistill.errors import GateError
    from edgedistill.export.quant import check_scheme_fits

    with pytest.raises(GateError, match="fp16 is refused for target 'watch'.*use --quant int8-dynamic"):
        check_scheme_fits(get_scheme("fp16"), load_target("watch"))
    check_scheme_fits(get_scheme("fp16"), load_target("phone"))
