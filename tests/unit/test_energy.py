"""modelled-v2 against hand-computed cases: workloads from a tiny config, the device model, host independence."""

import json
from pathlib import Path
from unittest import mock

import pytest

from edgedistill.measure.energy import budget_check, device_peaks, model_workload
from edgedistill.measure.macs import EncoderShape
from edgedistill.measure.workload import (INT4_G32, PRECISIONS, LMShape, Workload, decode_workload, encoder_workload,
                                          precision_for_scheme, prefill_workload)
from edgedistill.targets import Budget, Constant, Device, ExportRecipe, Target, load_target

FIXTURE = Path(__file__).resolve().parents[2] / "benchmarks" / "fixtures" / "calibration-amd-epyc-zen4.json"


def C(value, lo=None, hi=None):
    return Constant(value=value, lo=lo, hi=hi, kind="ASSUMED")


def target(isa=("dotprod",), cache_mb=6.0):
    consts = {"peak_fp32": C(100.0), "peak_fp16": C(200.0), "peak_int8_dot": C(500.0), "peak_int8_i8mm": C(1000.0),
              "dram_bandwidth": C(50.0, 40.0, 60.0), "eta_bw": C(0.5, 0.4, 0.6), "eta_compute": C(0.5, 0.25, 1.0),
              "op_overhead": C(10.0, 5.0, 20.0), "p_cpu": C(5.0, 4.0, 8.0), "p_uncore": C(0.5, 0.25, 1.0),
              "e_bit": C(10.0, 5.0, 20.0), "battery": C(10.0), "llc_effective": C(cache_mb)}
    return Target(name="t", description="test", device=Device(soc="s", reference_device="d", cpu="c", threads=4,
                                                              isa=list(isa), ram_gb=8),
                  constants=consts, budget=Budget(model_mb=C(20.0), memory_mb=C(100.0)),
                  export=ExportRecipe(backend="onnxruntime", quantization="int8-dynamic"))


TINY_LM = LMShape(layers=2, hidden=8, ffn=16, heads=2, kv_heads=1, head_dim=4, vocab=32)


def test_tiny_lm_counts_by_hand():
    # per layer: q 8x8=64, k and v 8x4=32 each, o 8x8=64, ffn 3x8x16=384 -> 576; 2 layers -> 1152
    assert TINY_LM.linear_params == 1152
    d = decode_workload(TINY_LM, context=10, precision=PRECISIONS["8da4w"])
    # linears + lm_head (32x8=256) group-wise (int4 weights); attention 2 x context x q(8) x layers = 320 in fp32
    assert d.macs == {"int8-grouped": 1152 + 256, "fp32": 320}
    # weights: (1152 + 256) int4 in groups of 32 + one int8 embedding row of 8
    assert d.weight_bytes == pytest.approx((1152 + 256) * INT4_G32 + 8)
    # KV cache: 2 (k, v) x 2 layers x 10 tokens x 1 head x 4 dims x 4 bytes
    assert d.kv_bytes == 2 * 2 * 10 * 1 * 4 * 4 == 640
    assert d.ops == 2 * 20 + 3
    p = prefill_workload(TINY_LM, prompt=6, precision=PRECISIONS["fp32"])
    assert p.macs == {"fp32": 6 * 1152 + 256 + 6 * 6 * 8 * 2}
    assert p.weight_bytes == (1152 + 256) * 4 + 6 * 8 * 4


def test_tiny_encoder_counts_by_hand():
    shape = EncoderShape(vocab=10, hidden=4, layers=1, ffn=8, heads=2, positions=16)
    w = encoder_workload(shape, batch=1, seq=3, precision=PRECISIONS["int8"])
    # linears 4x4x4 + 2x4x8 = 128 per token x 3 tokens; attention products 2 x 3 x 3 x 4 = 72 in fp32
    assert w.macs == {"int8": 384, "fp32": 72}
    assert w.weight_bytes == 128 * 1 + 3 * 4 * 4  # int8 linears + three fp32 embedding rows
    assert w.activations["scores"] == 2 * 3 * 3 * 4


def test_precision_for_scheme():
    from edgedistill.export.schemes import SCHEMES
    from edgedistill.measure.workload import SCHEME_PRECISION

    assert not [n for n in SCHEMES if n not in SCHEME_PRECISION], "a built-in scheme has no storage record"
    assert precision_for_scheme("int4-weight").mac_class == "fp32"  # weight-only: small bytes, fp32 arithmetic
    assert precision_for_scheme("et-8da4w").linear_bytes == INT4_G32
    assert precision_for_scheme("8da4w").mac_class == "int8-grouped"
    assert precision_for_scheme("8da4w").quantises_activations and precision_for_scheme("et-int8").quantises_activations
    assert precision_for_scheme("int8-dynamic").mac_class == "int8"
    assert precision_for_scheme("fp32").mac_class == "fp32"
    assert precision_for_scheme("no-such-scheme").mac_class == "fp32"


def test_compute_bound_case_by_hand():
    # 1 GMAC int8 at dot 500 GMAC/s x eta 0.5 = 4 ms; 1e6 elementwise at 100 x 0.5 = 0.02 ms;
    # 10 MB of weights > 6 MB cache: 1e7 / (50e9 x 0.5) = 0.4 ms; 100 ops x 10 us = 1 ms.
    wl = Workload({"int8": 1e9}, 1e6, 100, 1e7)
    out = model_workload(target(), wl)
    assert out["t_comp_ms"]["central"] == pytest.approx(4.02)
    assert out["t_mem_ms"]["central"] == pytest.approx(0.4)
    assert out["t_dev_ms"]["central"] == pytest.approx(5.02)
    assert out["bound"]["central"] == "compute" and out["energy_kind"] == "modelled-v2"
    # E = 5.02 ms x 5.5 W + 8 x 10 pJ x 1e7 B
    assert out["energy_mj"]["central"] == pytest.approx(5.02 * 5.5 + 0.8)
    # lo: eta 1.0, ops 5 us -> 2.01 + 0.5 ms; hi: eta 0.25, ops 20 us -> 8.04 + 2 ms
    assert out["t_dev_ms"]["lo"] == pytest.approx(2.01 + 0.5)
    assert out["t_dev_ms"]["hi"] == pytest.approx(8.04 + 2.0)
    assert out["energy_mj"]["lo"] == pytest.approx(2.51 * 4.25 + 8 * 5e-12 * 1e7 * 1e3)
    ipb = out["inferences_per_battery_percent"]
    assert ipb["lo"] < ipb["central"] < ipb["hi"]
    assert "eta_compute" in out["dominant"]["central"]["latency"]


def test_decode_switches_from_memory_to_compute_bound():
    t = target()
    # 100 MB of weights per token against 1 MMAC: memory-bound, 100e6 / (50e9 x 0.5) = 4 ms
    mem = model_workload(t, Workload({"int8": 1e6}, 0.0, 0, 1e8, kv_bytes=0.0))
    assert mem["bound"]["central"] == "memory" and mem["t_dev_ms"]["central"] == pytest.approx(4.0)
    assert mem["t_dev_ms"]["lo"] == pytest.approx(1e8 / (60e9 * 0.6) * 1e3)
    assert mem["dominant"]["central"]["latency"] == "eta_bw, dram_bandwidth"
    # KV cache traffic adds to the weights: 100 MB + 50 MB -> 6 ms
    kv = model_workload(t, Workload({"int8": 1e6}, 0.0, 0, 1e8, kv_bytes=5e7))
    assert kv["t_dev_ms"]["central"] == pytest.approx(6.0)
    # 10 GMAC on the same bytes: compute 10e9 / (500e9 x 0.5) = 40 ms > 4 ms
    comp = model_workload(t, Workload({"int8": 1e10}, 0.0, 0, 1e8))
    assert comp["bound"]["central"] == "compute" and comp["t_dev_ms"]["central"] == pytest.approx(40.0)


def test_real_decode_shape_is_memory_bound_on_the_phone():
    llama_1b = LMShape(layers=16, hidden=2048, ffn=8192, heads=32, kv_heads=8, head_dim=64, vocab=128256)
    out = model_workload(load_target("phone"), decode_workload(llama_1b, 128, PRECISIONS["8da4w"]), cold=True)
    assert out["bound"] == {"lo": "memory", "central": "memory", "hi": "memory"}
    pre = model_workload(load_target("phone"), prefill_workload(llama_1b, 64, PRECISIONS["8da4w"]), cold=True)
    assert pre["bound"]["central"] == "compute"


def test_cached_weights_cost_no_dram_unless_cold():
    wl = Workload({"fp32": 1e8}, 0.0, 0, 5e6, activations={"big": 8e6})
    assert model_workload(target(cache_mb=6), wl)["dram_bytes"] == pytest.approx(2 * 8e6)
    assert model_workload(target(cache_mb=6), wl, cold=True)["dram_bytes"] == pytest.approx(5e6 + 2 * 8e6)


def test_peak_selection_by_isa():
    assert device_peaks(target(isa=("dotprod", "i8mm")))["int8"][1] == "peak_int8_i8mm"
    assert device_peaks(target())["int8"][1] == "peak_int8_dot"
    assert device_peaks(target(isa=("fp16",)))["fp16"][1] == "peak_fp16"
    assert device_peaks(target())["fp16"][1] == "peak_fp32"  # no FP16 arithmetic: fp16 runs at the fp32 rate


def test_group_wise_int4_macs_run_at_the_kernel_share_of_the_int8_peak():
    from edgedistill.measure.energy import GROUPED_MAC_SHARE

    # 1 GMAC at i8mm 1000 GMAC/s x 64/138 x eta 0.5 vs the same MACs counted as plain int8 (1000 x 0.5)
    i8mm = target(isa=("dotprod", "i8mm"))
    grouped = model_workload(i8mm, Workload({"int8-grouped": 1e9}, 0.0, 0, 1e3))
    plain = model_workload(i8mm, Workload({"int8": 1e9}, 0.0, 0, 1e3))
    assert grouped["t_comp_ms"]["central"] == pytest.approx(1e3 / (1000 * 64 / 138 * 0.5))
    assert plain["t_comp_ms"]["central"] == pytest.approx(2.0)
    assert grouped["grouped_mac_share"] == GROUPED_MAC_SHARE and "grouped_mac_share" not in plain
    # the band scales alike: lo uses eta 1.0
    assert grouped["t_comp_ms"]["lo"] == pytest.approx(1e3 / (1000 * 64 / 138))
    # without i8mm the dotprod kernel's share of the SDOT peak: 500 x 128/208 x 0.5
    dot = model_workload(target(), Workload({"int8-grouped": 1e9}, 0.0, 0, 1e3))
    assert dot["t_comp_ms"]["central"] == pytest.approx(1e3 / (500 * 128 / 208 * 0.5))
    # the i8mm kernel still beats the dotprod one on the same core, by less than the 2x of the raw peaks
    assert 1.0 < dot["t_comp_ms"]["central"] / grouped["t_comp_ms"]["central"] < 2.0


def test_lm_head_class_can_differ_from_the_linears():
    from edgedistill.measure.workload import Precision

    p = Precision("8da4w + 8da8w head", "int8-grouped", INT4_G32, 1, 1, head_class="int8")
    d = decode_workload(TINY_LM, context=10, precision=p)
    assert d.macs == {"int8-grouped": 1152, "int8": 256, "fp32": 320}
    pre = prefill_workload(TINY_LM, prompt=6, precision=p)
    assert pre.macs["int8-grouped"] == 6 * 1152 and pre.macs["int8"] == 256


def test_device_figure_does_not_depend_on_the_host_calibration():
    from edgedistill.bench import stage  # noqa: F401  (the bench's import path must not pull a host figure in)
    from edgedistill.measure import calibrate
    from edgedistill.measure.device_model import annotate

    other = json.loads(FIXTURE.read_text())
    amx_like = {"fp32": 50.0, "int8": 967.0, "cpu": "x"}
    shape = EncoderShape(vocab=100, hidden=64, layers=2, ffn=128, heads=4, positions=64)
    results = []
    for cal in (other, amx_like):
        entry = {"name": "s", "role": "student", "quantization": "int8-dynamic", "size_bytes": 1e5,
                 "latency": {"1": {"cpu_ms": 1.0 if cal is other else 9.0}}}
        with mock.patch.object(calibrate, "host_peaks", return_value=cal):
            annotate([entry], {"student": shape}, [load_target("phone")], 1, 16)
        results.append(entry["energy"]["phone"])
    assert results[0]["t_dev_ms"] == results[1]["t_dev_ms"]
    assert results[0]["energy_mj"] == results[1]["energy_mj"]


def test_student_over_teacher_ratio_follows_time_when_compute_bound():
    t = target()
    teacher = model_workload(t, Workload({"fp32": 1e9}, 0.0, 0, 1e5))
    student = model_workload(t, Workload({"fp32": 1e8}, 0.0, 0, 1e5))
    assert teacher["energy_mj"]["central"] / student["energy_mj"]["central"] == pytest.approx(10.0, rel=1e-6)


def test_budget_check():
    b = budget_check(target(), 3e7, {"a": 1e6})
    assert b["size_mb"] == 30 and not b["fits_size_budget"] and b["fits_memory_budget"]


def test_llm_bench_energy_reports_decode_and_prefill_without_host_figures():
    from edgedistill.llm.bench import _energy, markdown
    from edgedistill.measure import calibrate

    info = {"layers": 30, "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
            "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152}
    with mock.patch.object(calibrate, "host_peaks", side_effect=AssertionError("host calibration read")):
        e = _energy({"model": info, "scheme": "et-8da4w"}, 64, 80, ["phone"])["phone"]
    assert e["energy_kind"] == "modelled-v2" and e["bound"]["central"] == "memory"
    d = e["decode_tokens_per_s"]
    assert d["lo"] < d["central"] < d["hi"]
    assert d["central"] == pytest.approx(1e3 / e["t_dev_ms_per_token"]["central"])
    assert e["prefill_bound"]["central"] == "compute" and e["prefill_ms"]["lo"] < e["prefill_ms"]["hi"]
    row = {"name": "m", "scheme": "et-8da4w", "size_bytes": 1e8, "threads": {}, "energy_per_token": {"phone": e}}
    md = markdown({"models": [row], "settings": {"targets": ["phone"]}, "ratios": {}})
    assert "| m | phone |" in md and "memory" in md
