"""benchmarks/llm_vs_optimum.py and llm_decode.py: paired ratio, headline, greedy agreement on fake timings."""

from pathlib import Path

import pytest
from conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_vs_optimum.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("llm_vs_optimum", "bench_llm_vs_optimum")


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


def test_headline_takes_the_worse_thread_count_of_the_default_export(bench):
    h = bench.headline({"filled": {"1": {"ratio": 1.3}, "2": {"ratio": 0.9}},
                        "custom": {"1": {"ratio": 1.1}, "2": {"ratio": 1.05}}})
    assert h == {"decode_vs_optimum_executorch": 1.05, "ours_attention": "custom",
                 "decode_vs_optimum_executorch_by_threads": {"1": 1.1, "2": 1.05},
                 "decode_vs_optimum_executorch_by_attention": {"filled": 0.9, "custom": 1.05}}
    # only the portable export measured: it is the headline, and says so
    h = bench.headline({"filled": {"1": {"ratio": 0.9}}})
    assert h["decode_vs_optimum_executorch"] == 0.9 and h["ours_attention"] == "filled"


def test_agreement_counts_prefix_and_positions(bench):
    g = bench.agreement([1, 2, 3, 4, 5], [1, 2, 9, 4, 5], first=2)
    assert g == {"agreeing_prefix": 2, "same_positions": 4, "compared": 5, "first_2_equal": True}
    assert bench.agreement([1, 2], [1, 2])["agreeing_prefix"] == 2


def test_optimum_export_command_pins_the_8da4w_settings(bench):
    cmd = bench.OPTIMUM_EXPORT.format(cli="optimum-cli", model="M", cache_len=512, out="O")
    for flag in ("--qlinear 8da4w", "--qlinear_group_size 32", "--qembedding 8w", "--max_seq_len 512",
                 "--recipe xnnpack", "--use_custom_kv_cache", "--use_custom_sdpa"):
        assert flag in cmd


def test_merge_headline_adds_the_keys_and_their_source_to_the_llm_results(bench, tmp_path):
    import json

    llm = tmp_path / "llm.json"
    llm.write_text(json.dumps({"headline": {"teacher_ppl": 54.1}, "runs": [1]}))
    h = bench.headline({"filled": {"1": {"ratio": 0.9}}, "custom": {"1": {"ratio": 1.1}}})
    bench.merge_headline(llm, h, tmp_path / "llm_vs_optimum.json")
    got = json.loads(llm.read_text())
    assert got["runs"] == [1] and got["headline"]["teacher_ppl"] == 54.1  # the rest stays
    assert got["headline"]["decode_vs_optimum_executorch"] == 1.1
    assert got["headline"]["decode_vs_optimum_executorch_by_attention"] == {"filled": 0.9, "custom": 1.1}
    assert "llm_vs_optimum.json" in got["headline"]["decode_vs_optimum_executorch_source"]


def test_llm_decode_student_vs_teacher_is_the_ratio_of_medians_per_attention():
    mod = load_benchmark("llm_decode", "bench_llm_decode")
    models = {"teacher": {"threads": {"1": {"static": 20.0, "filled": 200.0}}},
              "student-15L": {"threads": {"1": {"static": 44.0, "filled": 380.0}}}}
    assert mod.student_vs_teacher(models) == {"static": {"1": pytest.approx(2.2)}, "filled": {"1": pytest.approx(1.9)}}
    assert mod.student_vs_teacher({"teacher": models["teacher"]}) == {}
    models["student-15L-trim3"] = {"threads": {"1": {"filled": 420.0}}}  # a filled-only run
    assert mod.student_vs_teacher(models, "student-15L-trim3") == {"filled": {"1": pytest.approx(2.1)}}


def test_llm_decode_paired_ratio_divides_within_a_round():
    mod = load_benchmark("llm_decode", "bench_llm_decode")
    run = lambda *v: [{"decode_tok_s": x} for x in v]  # noqa: E731
    runs = {("teacher", "filled", 1): run(200, 100, 200), ("s", "filled", 1): run(400, 250, 380)}
    assert mod.paired(runs, "s", "filled", 1) == {"median": 2.0, "min": 1.9, "max": 2.5}
    assert mod.paired(runs, "s", "filled", 2) is None


def test_llm_decode_markdown_has_a_column_per_attention_timed():
    mod = load_benchmark("llm_decode", "bench_llm_decode")
    cell = {"filled": 200.0, "custom": 240.0, "prefill_tok_s": {}}
    res = {"cpu": "x", "cache_len": 512, "prompt_tokens": 64, "new_tokens": 48, "repeats": 3, "loadavg_start": 0.1,
           "loadavg_end": 0.2, "attentions": ["filled", "custom"],
           "models": {"teacher": {"threads": {"1": cell}, "bytes": {"filled": 10, "custom": 9}, "greedy_equal": False,
                                  "paired_vs_teacher": {}}}}
    md = mod._markdown(res)
    assert "filled vs custom" in md and "| teacher | 1 | 200.0 | 240.0 |\n" in md
    assert "speedup filled/static" not in md  # that column compares static with filled only
    teacher = {**res["models"]["teacher"], "greedy_equal": True, "bytes": {"static": 1, "filled": 2},
               "threads": {"1": {"static": 100.0, "filled": 150.0, "speedup": 1.5}}}
    pair = {**res, "attentions": ["static", "filled"], "models": {"teacher": teacher}}
    assert "| teacher | 1 | 100.0 | 150.0 | 1.50x | True |" in mod._markdown(pair)
    assert "| teacher | 10 | 9 |" in md


def test_rehead_rederives_a_stored_run_for_the_current_default_without_timing(bench, tmp_path):
    import json

    cell = lambda r: {"ratio": r, "quartiles": [r - 0.1, r + 0.1], "ours_tok_s": 100 * r, "optimum_tok_s": 100.0}  # noqa: E731
    stored = {"cpu": "x", "cache_len": 512, "prompt_tokens": 64, "new_tokens": 48, "rounds": 9, "loadavg_start": 0.1,
              "loadavg_end": 0.2, "threads_by_attention": {"filled": {"1": cell(0.8)}, "custom": {"1": cell(0.97)}},
              "headline": {"decode_vs_optimum_executorch": 0.8, "ours_attention": "filled"}, "greedy_agreement": {},
              "files": {}, "commands": {}}
    out = tmp_path / "vs"
    out.with_suffix(".json").write_text(json.dumps(stored))
    llm = tmp_path / "llm.json"
    llm.write_text(json.dumps({"headline": {"teacher_ppl": 54.1}}))
    with pytest.raises(SystemExit, match="no 'measured' date stored"):
        bench.rehead(out, str(llm), None)
    res = bench.rehead(out, str(llm), "2026-12-06")
    assert res["headline"]["decode_vs_optimum_executorch"] == 0.97 and res["headline"]["ours_attention"] == "custom"
    got = json.loads(llm.read_text())["headline"]
    assert got["decode_vs_optimum_executorch"] == 0.97 and got["teacher_ppl"] == 54.1
    assert "measured 2026-12-06; our custom export" in got["decode_vs_optimum_executorch_source"]
    assert "measured 2026-12-06" in out.with_suffix(".md").read_text()


def test_llm_decode_times_one_student_per_depth_asked(monkeypatch):
    from types import SimpleNamespace

    from llm_tiny import tiny_llama

    from edgedistill.llm import teacher as teacher_mod

    mod = load_benchmark("llm_decode", "bench_llm_decode")
    monkeypatch.setattr(teacher_mod, "resolve_llm_teacher", lambda **kw: SimpleNamespace(folder="unused"))
    monkeypatch.setattr(teacher_mod, "load_causal_lm", lambda folder: (tiny_llama(layers=6), "tok"))
    a = SimpleNamespace(student=True, student_layers=[2, 4], trim_min_count=None)
    got = {name: len(model.model.layers) for name, model, _, _ in mod._models(a)}
    assert got == {"teacher": 6, "student-2L": 2, "student-4L": 4}
    a.student_layers = None  # llm.py's student depth: half the teacher's layers
    assert [name for name, *_ in mod._models(a)] == ["teacher", "student-3L"]
    a.student_mlp = [8]  # and a narrower MLP: one student per (depth, width)
    got = {name: (len(m.model.layers), m.config.intermediate_size, m.model.layers[0].mlp.up_proj.out_features)
           for name, m, _, _ in mod._models(a)}
    assert got["student-3L-mlp8"] == (3, 8, 8) and len(got) == 2
