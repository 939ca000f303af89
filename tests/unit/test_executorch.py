"""ExecuTorch export: .pte programs match eager, quantised ones stay close, and the export
stage gates them like ONNX (parity, backend/scheme agreement, bundle with model.pte)."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_bert, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill.errors import GateError, ModelError, RecipeError
from edgedistill.export.bundle import verify_bundle
from edgedistill.export.executorch import EtOptions
from edgedistill.export.pte import pte_embedder, pte_runner
from edgedistill.export.quant import SCHEMES, get_scheme
from edgedistill.models.encode import batched_embed, embed_torch
from edgedistill.models.loading import load_encoder
from edgedistill.quality.metrics import mean_cosine, min_cosine

TEXTS = ["the movie was great", "a dull and boring film", "this plot is really clumsy", "so charming and funny",
         "the cast was superb but the ending was painful and tedious"] * 3
MAX_LEN = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # Two layers keep lowering fast; saved and reloaded as deps.md advises for export tests.
    return build_tiny_bert(tmp_path_factory.mktemp("et") / "bert", layers=2)


@pytest.fixture(scope="module")
def programs(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("pte")
    info = {name: get_scheme(name).fn(tiny, d / f"{name}.pte", EtOptions(max_length=MAX_LEN))
            for name in ("et-fp32", "et-int8")}
    return d, info


@pytest.fixture(scope="module")
def reference(tiny):
    model, tok = load_encoder(tiny)
    return tok, embed_torch(model, tok, TEXTS, MAX_LEN)


def test_et_schemes_are_registered_with_their_backend():
    et = {n for n, s in SCHEMES.items() if s.backend == "executorch"}
    assert et == {"et-fp32", "et-int8", "et-8da4w", "et-int8-static"}
    assert SCHEMES["int8-dynamic"].backend == "onnxruntime"


def test_fp32_pte_matches_eager_and_is_mostly_delegated(programs, reference):
    d, info = programs
    tok, ref = reference
    got = batched_embed(pte_embedder(d / "et-fp32.pte", 1), tok, TEXTS, MAX_LEN, batch_size=4)
    assert np.max(np.abs(got - ref)) < 1e-4
    share = info["et-fp32"]["xnnpack_delegated_share"]
    assert share > 0.9, info["et-fp32"]
    # portable ops only before the encoder (gathers, mask cast): one XNNPACK blob, no round trips
    assert info["et-fp32"]["delegate_subgraphs"] == 1, info["et-fp32"]
    # what stays on portable kernels is named (the embedding gathers at least)
    assert "aten.embedding.default" in info["et-fp32"]["portable_ops"]


def test_int8_pte_is_smaller_and_close(programs, reference):
    d, info = programs
    tok, ref = reference
    got = batched_embed(pte_embedder(d / "et-int8.pte", 1), tok, TEXTS, MAX_LEN)
    assert mean_cosine(ref, got) > 0.98 and min_cosine(ref, got) > 0.95
    assert np.max(np.abs(got - ref)) > 1e-6  # really quantised
    assert (d / "et-int8.pte").stat().st_size < 0.7 * (d / "et-fp32.pte").stat().st_size
    assert info["et-int8"]["xnnpack_delegated_share"] > 0.85


def test_runner_pads_short_and_clips_long_feeds(programs, reference):
    d, _ = programs
    tok, _ = reference
    run = pte_runner(d / "et-fp32.pte", 1)
    feats = tok(TEXTS[:2], padding=True, return_tensors="np")
    short = run(dict(feats))
    padded = run({k: np.pad(v, ((0, 0), (0, MAX_LEN + 8 - v.shape[1]))) for k, v in feats.items()})
    assert short.shape == (2, 32) and np.allclose(short, padded, atol=1e-5)


def test_runner_names_a_missing_input(programs):
    d, _ = programs
    with pytest.raises(ModelError, match="input 'attention_mask' missing"):
        pte_runner(d / "et-fp32.pte", 1)({"input_ids": np.ones((1, 4), dtype=np.int64)})


def test_missing_executorch_is_a_one_line_install_hint(monkeypatch, tiny, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "executorch", None)  # makes "import executorch" raise ImportError
    with pytest.raises(ModelError, match=r"pip install 'edgedistill\[executorch\]'"):
        get_scheme("et-fp32").fn(tiny, tmp_path / "x.pte", EtOptions(max_length=MAX_LEN))


def test_corrupt_pte_is_a_model_error(tmp_path):
    p = tmp_path / "bad.pte"
    p.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="ExecuTorch runtime cannot load"):
        pte_runner(p)


def _target(tmp: Path, quantization: str, backend: str, parity: str = "") -> Path:
    text = (Path(__file__).resolve().parents[2] / "targets" / "phone.toml").read_text()
    text = text.replace('backend = "onnxruntime"', f'backend = "{backend}"')
    text = text.replace('quantization = "int8-dynamic"', f'quantization = "{quantization}"')
    path = tmp / f"et-{quantization}-{backend}.toml"
    path.write_text(text.replace("[sources]", f"{parity}\n[sources]") if parity else text)
    return path


@pytest.fixture(scope="module")
def ws(tiny, tmp_path_factory):
    from edgedistill.recipe import load_recipe
    from edgedistill.workspace import Workspace

    tmp = tmp_path_factory.mktemp("etstage")
    data = write_jsonl(tmp / "data.jsonl", synthetic_rows(200))
    recipe = tiny_recipe(tmp, tiny, data)  # max_length 32 = MAX_LEN
    return Workspace(load_recipe(recipe), tmp / "run"), tmp


def test_stage_writes_a_pte_bundle_with_delegation_share(ws, tiny):
    from edgedistill.export.stage import run_export

    w, tmp = ws
    (bundle,) = run_export(w, targets=[str(_target(tmp, "et-int8", "executorch"))], student_dir=tiny)
    m = verify_bundle(bundle)
    assert m["backend"] == "executorch" and m["model_file"] == "model.pte" and "model.onnx" not in m["files"]
    assert m["quantization"]["scheme"] == "et-int8" and m["parity"]["passed"]
    assert 0.85 < m["xnnpack_delegated_share"] <= 1 and m["inputs"][0]["shape"] == [1, MAX_LEN]
    assert [o["shape"] for o in m["outputs"]] == [[1, MAX_LEN, "hidden"], [1, "hidden"]]
    assert not (w.export_dir / "student" / "model-fp32-opt.onnx").exists()  # no ONNX work for an ET-only plan
    # --quant puts an ONNX target on ExecuTorch too, reusing the cached program
    pte = w.export_dir / "student" / "model-et-int8.pte"
    before = pte.stat().st_mtime_ns
    (watch,) = run_export(w, targets=["watch"], quant="et-int8", student_dir=tiny)
    assert verify_bundle(watch)["backend"] == "executorch" and pte.stat().st_mtime_ns == before


def test_pte_bundle_runs_in_the_runtime_and_the_bench(ws, tiny):
    """The real ExecuTorch path end to end: bundle -> edgedistill.runtime and bench --model."""
    from edgedistill import api
    from edgedistill.export.stage import run_export
    from edgedistill.runtime import Bundle

    w, tmp = ws
    (bundle,) = run_export(w, targets=["watch"], quant="et-int8", student_dir=tiny)
    texts = ["the movie was great", "a dull and painful plot"]
    emb = Bundle.open(bundle).embed(texts)
    ref = w.recipe  # same pooling/normalize as the export
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3) == ref.teacher.normalize
    report = api.bench(w.recipe, tmp / "bench", models=[bundle], targets=["watch"])
    (entry,) = report["models"]
    assert entry["kind"] == "executorch" and entry["latency"]["1"]["p50_ms"] > 0
    assert entry["xnnpack_delegated_share"] == verify_bundle(bundle)["xnnpack_delegated_share"]


def test_stage_refuses_a_target_whose_scheme_and_backend_disagree(ws, tiny):
    from edgedistill.export.stage import run_export

    w, tmp = ws
    bad = _target(tmp, "et-int8", "onnxruntime")
    with pytest.raises(RecipeError, match=r"'et-int8' is an executorch scheme but backend is 'onnxruntime'"):
        run_export(w, targets=[str(bad)], student_dir=tiny)


def test_stage_refuses_a_failing_pte_and_suggests_the_next_scheme(ws, tiny):
    from edgedistill.export.stage import run_export

    w, tmp = ws
    strict = _target(tmp, "et-int8", "executorch", "[export.parity]\nmin_mean_cosine = 0.999999\n")
    with pytest.raises(GateError, match=r"parity gate failed for et-int8 .*no bundle written; try --quant et-fp32"):
        run_export(w, targets=[str(strict)], student_dir=tiny)
    assert json.loads((w.export_dir / "student" / "model-et-int8.json").read_text())["pte_sha256"]
