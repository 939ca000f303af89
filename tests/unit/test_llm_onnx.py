import numpy as np
import pytest
import torch
from llm_tiny import trained_tiny_llama

from edgedistill.errors import DataError, ModelError, RecipeError
from edgedistill.llm.export_onnx import export_onnx_lm, quantize_onnx_lm
from edgedistill.llm.generate import EagerLM, Sampling, stream
from edgedistill.llm.teacher import load_causal_lm
from edgedistill.runtime.onnx_lm import OnnxLM

PROMPTS = ([2, 5, 6, 7, 9], [4, 10, 11], [8, 9, 10, 12, 13, 14, 15])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # fitted for a few steps (then saved and reloaded), so greedy text varies instead of repeating one token
    root = tmp_path_factory.mktemp("onnxlm")
    model, tok = load_causal_lm(trained_tiny_llama(root / "m", steps=40))
    fp32 = export_onnx_lm(model, tok, root / "out", "fp32")
    files = {"fp32": fp32}
    for scheme in ("int8", "int4", "int8-dynamic"):
        files[scheme] = quantize_onnx_lm(fp32, fp32.with_name(f"lm-{scheme}.onnx"), scheme)
    return model, files


def test_fp32_greedy_equals_eager(exported):
    model, files = exported
    eager = list(stream(EagerLM(model, 48), PROMPTS[0], Sampling(max_new_tokens=12)))
    assert len(set(eager)) >= 3  # a meaningful comparison, not one repeated token
    lm = OnnxLM(files["fp32"], 48)
    assert list(stream(lm, PROMPTS[0], Sampling(max_new_tokens=12))) == eager
    # the same object again: the cache restarts at pos 0
    assert list(stream(lm, PROMPTS[0], Sampling(max_new_tokens=12))) == eager
    # the loop stops when the context is full, without overrunning the cache
    assert len(list(stream(OnnxLM(files["fp32"], 12), [2, 5, 6], Sampling(max_new_tokens=50)))) == 12 - 3 + 1
    assert (files["fp32"].parent / "tokenizer.json").is_file()
    assert (files["fp32"].parent / "lm-fp32.json").is_file()


def test_fp32_logits_prefill_and_decode(exported):
    model, files = exported
    lm = OnnxLM(files["fp32"], 48, threads=2)
    ids = PROMPTS[2]
    with torch.no_grad():
        def ref(n):
            return model(input_ids=torch.tensor([ids[:n]]), use_cache=False).logits[0, -1].numpy()

        np.testing.assert_allclose(lm.step_np(ids[:4], 0), ref(4), atol=1e-4)
        for pos in range(4, len(ids)):
            np.testing.assert_allclose(lm.step(ids[pos:pos + 1], pos), ref(pos + 1), atol=1e-4)
        # rewinding to an earlier position reuses the cached prefix
        np.testing.assert_allclose(lm.step_np(ids[2:3], 2), ref(3), atol=1e-4)
    with pytest.raises(DataError, match="position 9, but the cache holds 3"):
        lm.step_np([5], 9)
    with pytest.raises(DataError, match="exceed this model's context of 48"):
        lm.step_np(list(range(4, 30)) * 2, 0)


@pytest.mark.parametrize("scheme, op, tol", [("int8", "MatMulNBits", 0.05), ("int4", "MatMulNBits", 0.6),
                                             ("int8-dynamic", "MatMulInteger", 0.15)])
def test_quantized_close_to_fp32(exported, scheme, op, tol):
    import onnx

    _, files = exported
    ops = [n.op_type for n in onnx.load(str(files[scheme])).graph.node]
    # every linear (7 per layer, 2 layers, + the lm_head) is quantized
    assert ops.count(op) == 15
    assert files[scheme].stat().st_size < files["fp32"].stat().st_size
    ref, q = OnnxLM(files["fp32"], 48), OnnxLM(files[scheme], 48)
    for prompt in PROMPTS:
        a, b = ref.step_np(prompt, 0), q.step_np(prompt, 0)
        assert np.abs(a - b).max() < tol
        assert a.argmax() == b.argmax()
    assert len(list(stream(q, PROMPTS[0], Sampling(max_new_tokens=10)))) == 10


def test_bad_inputs(exported, tmp_path):
    model, files = exported
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07not an onnx graph" * 20)
    with pytest.raises(ModelError, match="corrupt.onnx: onnxruntime cannot load the model") as e:
        OnnxLM(bad, 48)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="not found"):
        OnnxLM(tmp_path / "missing.onnx", 48)
    with pytest.raises(RecipeError, match="unknown ONNX LM quantization 'int3'"):
        quantize_onnx_lm(files["fp32"], tmp_path / "x.onnx", "int3")
    with pytest.raises(RecipeError, match="int3"):
        export_onnx_lm(model, None, tmp_path, "int3")


def test_not_a_causal_lm(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, "s"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["y"])], "g", [x], [y])
    path = tmp_path / "encoder.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ModelError, match="encoder.onnx: not a causal LM with past key/values"):
        OnnxLM(path, 48)


def test_untie_lm_head_reading_the_embedding_through_a_transpose(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgedistill.llm.export_onnx import _untie_lm_head

    emb = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["h"]),
             helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
             helper.make_node("MatMul", ["h", "Et"], ["logits"])]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 10])],
                              [numpy_helper.from_array(emb, "E")])
    src, dest = tmp_path / "tied.onnx", tmp_path / "untied.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    _untie_lm_head(src, dest)
    out = onnx.load(str(dest)).graph
    assert "Transpose" not in [n.op_type for n in out.node]
    weight = {i.name: numpy_helper.to_array(i) for i in out.initializer}[out.node[-1].input[1]]
    np.testing.assert_array_equal(weight, emb.T)
    feed = {"input_ids": np.array([[1, 5, 9]], dtype=np.int64)}
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0] for p in (src, dest))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_runtime_is_torch_free(exported):
    import subprocess
    import sys

    _, files = exported
    code = ("import sys; from edgedistill.runtime.onnx_lm import OnnxLM; lm = OnnxLM(sys.argv[1], 16); "
            "lm.step_np([2, 5, 6], 0); lm.step_np([7], 3); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(files["int4"])], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_export_refused_when_fp32_disagrees(exported, tmp_path, monkeypatch):
    import shutil

    from edgedistill.llm import export_onnx

    model, files = exported
    # stand-ins for the slow export and a parity check that fails
    monkeypatch.setattr(export_onnx, "_export_fp32", lambda m, dest: shutil.copyfile(files["fp32"], dest))
    monkeypatch.setattr(export_onnx, "_parity", lambda m, path, vocab: float("nan"))
    with pytest.raises(ModelError, match="lm-int8.onnx: fp32 ONNX export disagrees with PyTorch"):
        export_onnx_lm(model, None, tmp_path / "o", "int8")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []



def test_a_tail_head_model_exports_to_onnx_and_decodes_as_eager(exported, tmp_path):
    """edgedistill.llm.tail_head: the exporter traces the three matrices and the gather like any head."""
    import copy

    from edgedistill.llm.tail_head import factorise

    model = copy.deepcopy(exported[0])
    model.lm_head = factorise(model.get_output_embeddings().weight, range(0, model.config.vocab_size, 3), 4)
    model.config.tie_word_embeddings = False
    path = export_onnx_lm(model, None, tmp_path, "fp32")  # refused unless within 5e-3 of eager
    eager = list(stream(EagerLM(model, 48), PROMPTS[0], Sampling(max_new_tokens=12)))
    assert len(set(eager)) >= 3  # the rank-4 tail still leaves a varied greedy text to compare
    assert list(stream(OnnxLM(path, 48), PROMPTS[0], Sampling(max_new_tokens=12))) == eager
    assert list(stream(OnnxLM(quantize_onnx_lm(path, tmp_path / "lm-int4.onnx", "int4"), 48), PROMPTS[0],
                       Sampling(max_new_tokens=2)))
