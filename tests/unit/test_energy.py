"""modelled-v1 against hand-computed cases."""

import pytest

from edgedistill.measure.energy import budget_check, device_peaks, model_inference
from edgedistill.measure.macs import EncoderShape, count
from edgedistill.targets import Budget, Constant, Device, ExportRecipe, Target, load_target


def C(value, lo=None, hi=None):
    return Constant(value=value, lo=lo, hi=hi, kind="ASSUMED")


def target(isa=("dotprod",), cache_mb=6.0):
    consts = {"peak_fp32": C(100.0), "peak_int8_dot": C(500.0), "peak_int8_i8mm": C(1000.0),
              "dram_bandwidth": C(50.0, 40.0, 60.0), "eta_bw": C(0.5), "p_cpu": C(5.0, 4.0, 8.0),
              "p_uncore": C(0.5, 0.25, 1.0), "e_bit": C(10.0, 5.0, 20.0), "battery": C(10.0),
              "llc_effective": C(cache_mb)}
    return Target(name="t", description="test", device=Device(soc="s", reference_device="d", cpu="c", threads=4,
                                                              isa=list(isa), ram_gb=8),
                  constants=consts, budget=Budget(model_mb=C(20.0), memory_mb=C(100.0)),
                  export=ExportRecipe(backend="onnxruntime", quantization="int8-dynamic"))


def test_compute_bound_case_by_hand():
    # host: 1 GMAC int8 at 100 GMAC/s = 10 ms of GEMM; measured 20 ms CPU -> 10 ms of other work.
    # device (dot, 4 threads): GEMM 1 GMAC / 500 GMAC/s = 2 ms; single-thread speed ratio
    # S = 50 (host fp32 per thread) / (100 / 4) = 2 -> other work 10 ms x 2 / 4 threads = 5 ms.
    # DRAM: 10 MB of weights > 6 MB cache, read every inference; t_mem = 1e7 / (0.5 * 50e9) = 0.4 ms.
    out = model_inference(target(), {"int8": 1e9}, 0.020, {"int8": 100.0, "fp32": 50.0}, 1e7, {"a": 1e5})
    assert out["host_gemm_ms"] == pytest.approx(10.0) and out["host_other_ms"] == pytest.approx(10.0)
    assert out["single_thread_speed_ratio"] == pytest.approx(2.0)
    assert out["t_gemm_ms"] == pytest.approx(2.0) and out["t_other_ms"] == pytest.approx(5.0)
    assert out["t_comp_ms"] == pytest.approx(7.0)
    assert out["t_mem_ms"]["central"] == pytest.approx(0.4)
    assert out["t_dev_ms"] == {"lo": pytest.approx(7.0), "central": pytest.approx(7.0), "hi": pytest.approx(7.0)}
    # E = 7 ms x 5.5 W + 8 x 10 pJ x 1e7 B = 38.5 mJ + 0.8 mJ
    assert out["energy_mj"]["central"] == pytest.approx(39.3)
    assert out["energy_mj"]["lo"] == pytest.approx(7e-3 * 4.25 * 1e3 + 8 * 5e-12 * 1e7 * 1e3)
    assert out["energy_mj"]["hi"] == pytest.approx(7e-3 * 9.0 * 1e3 + 8 * 20e-12 * 1e7 * 1e3)
    # 1 % of 10 Wh = 360 J
    assert out["inferences_per_battery_percent"]["central"] == pytest.approx(360 / 0.0393)
    ipb = out["inferences_per_battery_percent"]
    assert ipb["lo"] < ipb["central"] < ipb["hi"]
    assert out["energy_kind"] == "modelled-v1" and out["bound"]["central"] == "compute"


def test_memory_bound_case_and_bandwidth_range():
    # 1 GB of weights: t_mem = 1e9 / (0.5 * 50e9) = 40 ms >> t_comp = 7 ms; lo uses the 60 GB/s end.
    out = model_inference(target(), {"int8": 1e9}, 0.020, {"int8": 100.0, "fp32": 50.0}, 1e9, {})
    assert out["bound"]["central"] == "memory"
    assert out["t_dev_ms"]["central"] == pytest.approx(40.0)
    assert out["t_dev_ms"]["lo"] == pytest.approx(1e9 / (0.5 * 60e9) * 1e3)
    assert out["t_dev_ms"]["hi"] == pytest.approx(1e9 / (0.5 * 40e9) * 1e3)


def test_cached_weights_cost_no_dram_unless_cold():
    warm = model_inference(target(cache_mb=6), {"fp32": 1e8}, 0.004, {"fp32": 50.0}, 5e6, {"big": 8e6})
    assert warm["dram_bytes"] == pytest.approx(2 * 8e6)  # only the activation that spills, read + write
    cold = model_inference(target(cache_mb=6), {"fp32": 1e8}, 0.004, {"fp32": 50.0}, 5e6, {"big": 8e6}, cold=True)
    assert cold["dram_bytes"] == pytest.approx(5e6 + 2 * 8e6)


def test_mixed_classes_and_i8mm_selection():
    # host GEMM = 1e9/100e9 + 1e8/50e9 = 12 ms; cpu 12 ms -> no other work
    # device with i8mm = 1e9/1000e9 + 1e8/100e9 = 2 ms
    out = model_inference(target(isa=("dotprod", "i8mm")), {"int8": 1e9, "fp32": 1e8}, 0.012,
                          {"int8": 100.0, "fp32": 50.0}, 1e6, {})
    assert out["t_other_ms"] == 0.0
    assert out["t_comp_ms"] == pytest.approx(2.0)
    assert out["device_peaks"]["int8"]["constant"] == "peak_int8_i8mm"
    assert device_peaks(target())["int8"] == (500.0, "peak_int8_dot")


def test_student_over_teacher_ratio_follows_time_when_compute_bound():
    t = target()
    teacher = model_inference(t, {"fp32": 1e9}, 0.04, {"fp32": 50.0, "int8": 100.0}, 1e5, {})
    student = model_inference(t, {"fp32": 1e8}, 0.004, {"fp32": 50.0, "int8": 100.0}, 1e5, {})
    ratio = teacher["energy_mj"]["central"] / student["energy_mj"]["central"]
    assert ratio == pytest.approx(10.0, rel=1e-6)


def test_budgets():
    t = target()
    ok = budget_check(t, 1.5e7, {"a": 1e6})
    assert ok["fits_size_budget"] and ok["fits_memory_budget"]
    big = budget_check(t, 2.5e7, {"a": 9e7})
    assert not big["fits_size_budget"] and not big["fits_memory_budget"]


def test_builtin_targets_model_without_errors():
    shape = EncoderShape(vocab=30522, hidden=384, layers=2, ffn=768, heads=12, positions=512, type_vocab=2)
    c = count(shape, 1, 128, "int8-dynamic")
    for name in ("phone", "phone-ios", "phone-midrange", "tablet", "watch"):
        out = model_inference(load_target(name), c["macs"], 0.003, {"int8": 700.0, "fp32": 70.0}, 1.4e7,
                              c["activation_bytes"])
        e = out["energy_mj"]
        assert 0 < e["lo"] <= e["central"] <= e["hi"], name
        assert out["constants_version"].startswith(name + "@")


def test_mac_counts_by_hand():
    # 1 layer, h=4, f=8, seq 3, batch 2: tokens 6; projections 6*4*16 = 384; ffn 6*2*4*8 = 384;
    # attention products 2*2*3*3*4 = 144
    c = count(EncoderShape(vocab=10, hidden=4, layers=1, ffn=8, heads=2, positions=5, type_vocab=2), 2, 3, "int8-dynamic")
    assert c["macs"] == {"fp32": 144, "int8": 768}
    assert c["params"]["embeddings"] == (10 + 5 + 2) * 4 + 8
    assert c["params"]["attention"] == 4 * 16 + 16 + 8
    assert c["params"]["ffn"] == 2 * 32 + 8 + 4 + 8
    assert count(EncoderShape(10, 4, 1, 8, 2, 5), 2, 3, "fp32")["macs"] == {"fp32": 144 + 768}


def test_modelled_numbers_get_two_significant_figures():
    from edgedistill.measure.energy import sig2

    assert [sig2(x) for x in (6491.2, 108.4, 74.44, 8.51, 0.01234, 0.0)] == ["6,500", "110", "74", "8.5", "0.012", "0.0"]
    assert sig2(None) == "–"


def test_rapl_host_energy_reads_packages_and_handles_wraparound(tmp_path, monkeypatch):
    from edgedistill.measure import rapl

    monkeypatch.setenv(rapl.ROOT_ENV, str(tmp_path))
    assert not rapl.available() and rapl.read() is None
    for pkg, (e, wrap) in {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (9_900_000, 10_000_000)}.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "energy_uj").write_text(str(e))
        (tmp_path / pkg / "max_energy_range_uj").write_text(str(wrap))
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain (core), already counted in its package
    before = rapl.read()
    assert rapl.available() and set(before) == {"intel-rapl:0", "intel-rapl:1"}
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("3000000")   # +2 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("400000")    # wrapped: +0.5 J
    assert rapl.joules_between(before, rapl.read()) == pytest.approx(2.5)
    assert rapl.joules_between(None, before) is None


def test_host_energy_is_reported_only_where_measured_and_labelled_as_host():
    from edgedistill.report.results import host_energy_lines

    report = {"models": [{"name": "a", "latency": {"2": {"host_energy_mj": 12.3}}},
                         {"name": "b", "latency": {"2": {"host_energy_mj": None}}}]}
    (line,) = [x for x in host_energy_lines(report, "2") if x]
    assert "measured-rapl (host)" in line and "a 12 mJ" in line and "b " not in line
    assert host_energy_lines({"models": [{"name": "b", "latency": {"2": {}}}]}, "2") == []
