import pytest

from edgedistill.errors import GateError, RecipeError
from edgedistill.export.quant import Scheme, check_scheme_fits, get_scheme
from edgedistill.targets import REQUIRED_CONSTANTS, builtin_dir, list_targets, load_target


def test_builtin_targets_load_with_sourced_constants():
    names = list_targets()
    assert {"phone", "tablet", "watch"} <= set(names)
    for name in names:
        t = load_target(name)
        assert set(REQUIRED_CONSTANTS) <= set(t.constants)
        for c in t.constants.values():
            assert c.kind == "ASSUMED" or c.source, (name, c)
            if c.lo is not None:
                assert c.lo <= c.value <= c.hi
        get_scheme(t.export.quantization)  # every target names a registered scheme


def test_watch_profile_reflects_a53():
    w = load_target("watch")
    assert "dotprod" not in w.device.isa and not w.export.fp16
    assert w.budget.model_mb.value <= 50


def test_host_threads_are_capped_at_host_cores():
    import os

    assert load_target("phone").host_threads() == min(4, len(os.sched_getaffinity(0)))


def _custom(tmp_path, edit):
    text = (builtin_dir() / "phone.toml").read_text()
    p = tmp_path / "mine.toml"
    p.write_text(edit(text))
    return p


def test_user_target_file_is_accepted(tmp_path):
    t = load_target(str(_custom(tmp_path, lambda s: s.replace('name = "phone"', 'name = "mine"'))))
    assert t.name == "mine"


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.replace("p_cpu = { value = 6.3, lo = 4.4", "p_cpu = { value = 6.3, lo = 7.0"), "lo <= value <= hi"),
    (lambda s: s.replace('source = "R50"', 'source = "R99"'), "source 'R99' is not in [sources]"),
    (lambda s: s.replace("threads = 4", 'threads = "four"'), "key 'threads': expected an integer"),
    (lambda s: s.replace("e_bit = {", "e_bits = {").replace("e_bits", "x_bit"), "missing required constant 'e_bit'"),
    (lambda s: s.replace('kind = "DERIVED", source = "R7"', 'kind = "MEASURED", source = "R7"'), "key 'kind'"),
    # physically impossible values, with the unit in the error
    (lambda s: s.replace("p_cpu = { value = 6.3, lo = 4.4", "p_cpu = { value = -6.3, lo = -8"),
     "[constants] p_cpu key 'value': expected 0.001..500 W, got -6.3 W"),
    (lambda s: s.replace("peak_int8_dot = { value = 513", "peak_int8_dot = { value = -513"),
     "peak_int8_dot key 'value': expected 0.01..1e+06 GMAC/s"),
    (lambda s: s.replace('lo = 0.45, hi = 0.75', 'lo = 0.45, hi = 1.6', 1), "eta_bw key 'hi': expected 0.01..1"),
    (lambda s: s.replace("op_overhead = {", "# op_overhead = {"), "missing required constant 'op_overhead'"),
    (lambda s: s.replace('e_bit = { value = 8, lo = 6', 'e_bit = { value = 8, lo = -6'), "e_bit key 'lo'"),
    (lambda s: s.replace('unit = "GB/s"', 'unit = "MB/s"'), "dram_bandwidth key 'unit': expected 'GB/s', got 'MB/s'"),
    (lambda s: s.replace("model_mb = { value = 2048", "model_mb = { value = 0"), "[budget] model_mb key 'value'"),
    (lambda s: s.replace("threads = 4", "threads = 0"), "key 'threads': expected 1..1024"),
    (lambda s: s.replace("ram_gb = 12", "ram_gb = -1"), "key 'ram_gb'"),
    # a misspelt optional constant is refused, not ignored in favour of a default
    (lambda s: s.replace("llc_effective = {", "llc_efective = {"), "unknown constant 'llc_efective'"),
])
def test_bad_target_files(tmp_path, edit, expected):
    with pytest.raises(RecipeError) as e:
        load_target(str(_custom(tmp_path, edit)))
    assert expected in str(e.value) and "mine.toml" in str(e.value)


def test_unknown_target_name_lists_builtins():
    with pytest.raises(RecipeError, match="unknown target 'toaster'.*phone"):
        load_target("toaster")


def test_scheme_needing_missing_isa_is_refused_with_reason():
    s = Scheme("int8-i8mm", lambda a, b: None, "test", 0.9, 0.9, 0.1, requires_isa=("i8mm",))
    check_scheme_fits(s, load_target("phone"))
    with pytest.raises(GateError, match="lacks i8mm"):
        check_scheme_fits(s, load_target("watch"))
    fp16 = Scheme("fp16", lambda a, b: None, "test", 0.9, 0.9, 0.1)
    with pytest.raises(GateError, match="fp16 arithmetic"):
        check_scheme_fits(fp16, load_target("watch"))


def test_validation_target_phone_s22():
    t = load_target("phone-s22")
    assert t.device.soc.startswith("Qualcomm Snapdragon 8 Gen 1")
    assert t.constants["dram_bandwidth"].value == 51.2 and t.constants["peak_int8_i8mm"].value == 864
    for key in ("eta_bw", "eta_compute", "op_overhead"):
        c = t.constants[key]
        assert c.lo < c.value < c.hi, key
