"""benchmarks/llm_vs_optimum.py: the paired ratio, headline and greedy agreement on fake timings and tokens."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_vs_optimum.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_llm_vs_optimum", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_ratio_is_the_median_of_per_pair_ratios_not_a_ratio_of_medians(bench):
    # host speed swings between pairs; each pair is ours 2x theirs, so the paired ratio is exactly 2
    ours, theirs = [20.0, 60.0, 100.0, 40.0], [10.0, 30.0, 50.0, 20.0]
    r = bench.paired_ratio(ours, theirs)
    assert r["ratio"] == pytest.approx(2.0) and r["quartiles"] == pytest.approx([2.0, 2.0]) and r["pairs"] == 4
    # ratios 0.5, 2.5, 0.833: the paired median is 0.833, the ratio of the medians (50 / 40) would be 1.25
    r = bench.paired_ratio([10.0, 100.0, 50.0], [20.0, 40.0, 60.0])
    assert r["ratio"] == pytest.approx(50 / 60) and r["ours_tok_s"] == 50.0 and r["optimum_tok_s"] == 40.0


def test_paired_ratio_rejects_unpaired_lists(bench):
    with pytest.raises(ValueError, match="equal"):
        bench.paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        bench.paired_ratio([], [])


def test_headline_takes_the_worse_thread_count(bench):
    h = bench.headline({"1": {"ratio": 1.3}, "2": {"ratio": 0.9}})
    assert h == {"decode_vs_optimum_executorch": 0.9,
                 "decode_vs_optimum_executorch_by_threads": {"1": 1.3, "2": 0.9}}


def test_agreement_counts_prefix_and_positions(bench):
    g = bench.agreement([1, 2, 3, 4, 5], [1, 2, 9, 4, 5], first=2)
    assert g == {"agreeing_prefix": 2, "same_positions": 4, "compared": 5, "first_2_equal": True}
    assert bench.agreement([1, 2], [1, 2])["agreeing_prefix"] == 2


def test_optimum_export_command_pins_the_8da4w_settings(bench):
    cmd = bench.OPTIMUM_EXPORT.format(cli="optimum-cli", model="M", cache_len=512, out="O")
    for flag in ("--qlinear 8da4w", "--qlinear_group_size 32", "--qembedding 8w", "--max_seq_len 512",
                 "--recipe xnnpack", "--use_custom_kv_cache", "--use_custom_sdpa"):
        assert flag in cmd
