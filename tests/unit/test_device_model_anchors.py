"""benchmarks/device_model.py: anchors modelled under the conditions they were measured in, the result contract."""

import json
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    return load_benchmark("device_model", "device_model_bench")


def test_with_cores_adds_per_core_peaks_by_the_targets_formula():
    from edgedistill.targets import load_target

    mod = _load()
    phone = load_target("phone")
    six = mod.with_cores(phone, mod.ONEPLUS12_LLAMA_EXTRA)
    # two A720 @2.96 GHz, 2 x 128-bit pipes: fp32 4, fp16 8, SDOT 16, SMMLA 32 MACs per pipe and cycle
    assert six.constants["peak_fp32"].value == pytest.approx(128 + 2 * 2 * 4 * 2.96)
    assert six.constants["peak_int8_i8mm"].value == pytest.approx(1026 + 2 * 2 * 32 * 2.96)
    assert six.device.threads == 6 and phone.device.threads == 4  # the target itself is untouched
    assert phone.constants["peak_fp32"].value == 128
    assert mod.with_cores(phone, []) is phone


def test_every_executorch_llama_anchor_uses_the_published_thread_count():
    mod = _load()
    for a in mod.anchors():
        assert bool(a.get("cores")) == (a["source"] == mod.SRC_ET_LLAMA), a["id"]


def test_report_contract(tmp_path):
    mod = _load()
    r = mod.main(["--out", str(tmp_path)])
    h = r["headline"]
    assert h["count"] >= 3 and h["energy_kind"] == "modelled-v2"
    for a in h["anchors"]:
        assert {"published", "modelled_central", "ratio", "in_band"} <= set(a)
    assert h["host_spread"] <= h["goal_host_spread"]
    rows = {x["id"]: x for x in r["rows"]}
    sq = rows["llama-3.2-1b-spinquant-oneplus12-prefill"]
    # both corrections are visible: without them the figure moves, and in the documented direction
    w = sq["without_corrections"]
    assert w["at_target_threads"] < sq["modelled_central"] < w["grouped_at_int8_peak"]
    assert sq["threads"] == 6
    saved = json.loads((tmp_path / "device_model.json").read_text())
    assert saved["headline"] == json.loads(json.dumps(h))
    assert "group-wise" in (tmp_path / "device_model.md").read_text()
