"""The e2e student (real teacher blocks, real VADER text) exported to an int8 .pte through the
export stage: parity gate on held-out sentences, bundle with model.pte, delegation share."""

import json
import time
from pathlib import Path

import pytest

from edgedistill.export.bundle import verify_bundle

pytestmark = pytest.mark.e2e


def test_real_student_exports_et_int8_through_the_stage(run, tmp_path):
    from edgedistill import api

    run_dir, _ = run
    phone = (Path(__file__).resolve().parents[2] / "targets" / "phone.toml").read_text()
    target = tmp_path / "phone-et.toml"
    # its own target name, so the ONNX phone bundle the other e2e tests read stays untouched
    target.write_text(phone.replace('name = "phone"', 'name = "phone-et"'))
    t0 = time.perf_counter()
    (bundle,) = api.export(run_dir.parent / "recipe.toml", run_dir, targets=[str(target)], quant="et-int8")
    elapsed = time.perf_counter() - t0
    m = verify_bundle(bundle)
    assert bundle.name == "phone-et" and m["backend"] == "executorch" and m["model_file"] == "model.pte"
    p = m["parity"]
    assert p["passed"] and p["sentences"] == 60 and p["mean_cosine"] > 0.98
    assert p["probe_drop"] is not None and p["probe_drop"] <= p["thresholds"]["max_probe_drop"]
    assert m["xnnpack_delegated_share"] > 0.9
    assert m["files"]["model.pte"]["bytes"] < 16e6  # int8 linears and int8 embedding table
    assert json.loads((run_dir / "bundles" / "phone" / "manifest.json").read_text())["backend"] == "onnxruntime"
    assert elapsed < 300, f"et-int8 export took {elapsed:.0f} s"
