"""benchmarks/llm_train_precision.py: the paired ratio and the report (the timing itself is the benchmark's)."""

from conftest import load_benchmark


def test_paired_ratio_and_markdown():
    b = load_benchmark("llm_train_precision", "bench_llm_precision")
    h = b.paired([100.0, 110.0, 90.0], [170.0, 160.0, 180.0])
    assert h["ratio_of_medians"] == 1.7 and h["paired_min"] == round(160 / 110, 3) and h["paired_max"] == 2.0
    res = {"headline": {"bf16_speedup": 1.7, "paired_median": 1.7, "paired_min": 1.455, "paired_max": 2.0},
           "tok_s": {"fp32": [100.0, 110.0, 90.0], "bf16": [170.0, 160.0, 180.0]}, "rounds": 3, "steps": 8,
           "cpu_bf16": [], "host": "h", "torch": "t", "measured": "d", "command": "c"}
    md = b.markdown(res)
    assert "bf16 units: none" in md and "**1.7x**" in md and "| bf16 | 170.0, 160.0, 180.0 | 170.0 |" in md
