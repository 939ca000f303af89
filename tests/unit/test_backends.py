"""The backend registry and the scheme records: detection, require, open -> Runner, fields not names."""

import re
from pathlib import Path

import numpy as np
import pytest

from edgedistill import backends
from edgedistill.errors import GateError, ModelError, RecipeError
from edgedistill.export.schemes import ALIASES, SCHEMES, check_scheme_fits, get_scheme, get_task_scheme, names

DOC = (Path(__file__).resolve().parents[2] / "docs" / "backends.md").read_text()


def _graph(path: Path) -> Path:
    """A two-input ONNX graph: y = input_ids + attention_mask, plus a float initializer of 12 bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("y", TensorProto.INT64, ["b", "s"])
    w = numpy_helper.from_array(np.zeros(3, np.float32), "unused_weight")
    g = helper.make_graph([helper.make_node("Add", ["input_ids", "attention_mask"], ["y"])], "g", ins, [out], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_registry_names_aliases_and_suffixes(tmp_path):
    assert set(backends.BACKENDS) == {"onnxruntime", "executorch", "torch"}
    assert backends.get("onnx") is backends.get("onnxruntime") and backends.get("pytorch").NAME == "torch"
    assert backends.for_path(tmp_path / "m.onnx").NAME == "onnxruntime"
    assert backends.for_path(tmp_path / "m.pte").NAME == "executorch"
    assert backends.for_path(tmp_path).NAME == "torch"  # a folder
    with pytest.raises(ModelError, match=r"m\.tflite: no backend runs this file .*\.onnx, \.pte"):
        backends.for_path(tmp_path / "m.tflite")
    with pytest.raises(ModelError, match="backend 'coreml' is unknown"):
        backends.get("coreml")
    for name in backends.BACKENDS:
        mod = backends.get(name)
        assert callable(mod.open) and callable(mod.require) and mod.EXTRA and mod.RUNTIME_MODULES
        assert isinstance(mod.TORCH_FREE, bool) and mod.LABEL


def test_onnx_runner_runs_filters_inputs_and_reports_memory(tmp_path):
    path = _graph(tmp_path / "add.onnx")
    r = backends.open_file(path, threads=1)
    assert (r.backend, r.input_names, r.output_names) == ("onnxruntime", ["input_ids", "attention_mask"], ["y"])
    feed = {"input_ids": np.array([[1, 2]]), "attention_mask": np.array([[1, 1]]), "token_type_ids": np.zeros((1, 2))}
    assert r(feed)["y"].tolist() == [[2, 3]]  # token_type_ids, which the graph lacks, is dropped
    assert r.output("y")({"input_ids": [[5]], "attention_mask": [[1]]}).tolist() == [[6]]  # lists work too
    mem = r.memory()
    assert mem["weights_bytes"] == 12 and mem["weights_source"] == "ONNX graph initializers"


def test_onnx_load_errors_are_one_line(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07not an onnx graph" * 20)
    with pytest.raises(ModelError, match="corrupt.onnx: onnxruntime cannot load the model") as e:
        backends.get("onnxruntime").open(bad)
    assert "\n" not in str(e.value)


def test_one_require_message_per_backend(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    gone = {"executorch", "onnxruntime", "transformers"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    with pytest.raises(ModelError, match=r"^m\.pte: running an ExecuTorch \(\.pte\) program needs the executorch "
                                         r"package, which needs torch: pip install 'edgedistill\[executorch\]'; "
                                         r"use X$"):
        backends.get("executorch").require("m.pte", "use X")
    with pytest.raises(ModelError, match=r"needs the onnxruntime package: pip install 'edgedistill\[runtime\]'"):
        backends.get("onnxruntime").require("m.onnx")
    with pytest.raises(ModelError, match=r"needs the transformers package: pip install 'edgedistill\[full\]'"):
        backends.get("torch").require("folder")
    with pytest.raises(ModelError, match=r"^exporting an et-\* scheme needs the executorch package"):
        backends.get("executorch").require("exporting an et-* scheme", export=True)


def test_scheme_records_are_consistent():
    for s in SCHEMES.values():
        assert s.backend in backends.BACKENDS and s.tasks, s
        assert s.compute in ("fp32", "int8", "fp16")
        assert s.name.startswith("et-") == (s.backend == "executorch"), s.name  # one naming rule
        assert s.model_file == "model" + backends.get(s.backend).SUFFIX
        if s.fallback:  # the gate's suggestion is gentler, on the same backend, and terminates
            f = SCHEMES[s.fallback]
            assert f.backend == s.backend and f.encoder and not f.calibrated
    for old, new in ALIASES.items():
        assert get_scheme(old) is SCHEMES[new] and old not in SCHEMES and "causal-lm" in SCHEMES[new].tasks
    assert names("encoder") == [n for n in SCHEMES if SCHEMES[n].encoder]
    assert get_task_scheme("8da4w", "causal-lm", "x").name == "et-8da4w"
    with pytest.raises(RecipeError, match=r"x: scheme 'int8-static' does not export causal-lm models"):
        get_task_scheme("int8-static", "causal-lm", "x")
    with pytest.raises(RecipeError, match=r"x: unknown quantization 'int3' \(registered for encoder models: fp32, "):
        get_task_scheme("int3", "encoder", "x")
    with pytest.raises(RecipeError, match=r"x: scheme 'int8-weight' does not export encoder models"):
        get_task_scheme("int8-weight", "encoder", "x")
    with pytest.raises(RecipeError, match="exports causal LMs only"):
        SCHEMES["int8-weight"].fn  # noqa: B018


def test_behaviour_comes_from_fields_not_names(monkeypatch):
    """A renamed scheme keeps its behaviour: the gate, the calibration and the device model read fields."""
    import dataclasses

    from edgedistill.measure.macs import linear_class
    from edgedistill.export.parity import ParityReport, failure_message
    from edgedistill.targets import load_target

    odd = dataclasses.replace(SCHEMES["fp16"], name="half-precision", requires_isa=())  # needs_fp16 alone
    with pytest.raises(GateError, match="half-precision is refused for target 'watch'.*fp16 arithmetic"):
        check_scheme_fits(odd, load_target("watch"))
    assert linear_class("et-int8") == "int8" and linear_class("int4-weight") == "fp32"
    assert linear_class("8da4w") == "int8" and linear_class("eager-fp32") == "fp32"
    monkeypatch.setitem(SCHEMES, "q-fancy", dataclasses.replace(SCHEMES["int8-static"], name="q-fancy"))
    rep = ParityReport("q-fancy", 10, 0.5, 0.4, 1.0, {}, failures=["mean cosine 0.5 < 0.98"])
    assert failure_message(rep, "phone").endswith("try --quant int8-dynamic")


def test_docs_table_matches_the_records():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (onnxruntime|executorch) \|", DOC,
                                                         re.M)}
    assert rows == {n: s.backend for n, s in SCHEMES.items()}
    for old, new in ALIASES.items():
        assert f"| `{old}` | `{new}` |" in DOC
