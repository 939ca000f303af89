"""benchmarks/llm.py helpers: every method gets the same step budget; the markdown renders the headline."""

import argparse
from pathlib import Path

import pytest
from conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("llm", "bench_llm")


def _args(**kw):
    d = dict(block=64, train_blocks=16, val_blocks=2, test_blocks=4, layers=15, calib=2, lr=3e-4, warmup=1,
             steps=10, batch=2, eval_every=5, gen_tokens=8, seq_kd_prompts=8, chat_ratio=0.25, chat_prompts=8,
             chat_eval=4, chat_answer_tokens=8, precision="fp32", intermediate_size=None)
    return argparse.Namespace(**(d | kw))


@pytest.mark.parametrize("method,mode", [("nokd", "nokd"), ("kd", "kd"), ("kd_ce", "kd"), ("seq_kd", "seq_kd"),
                                         ("on_policy", "on_policy"), ("progressive", "kd")])
def test_each_method_gets_the_same_budget(bench, method, mode):
    base = bench.base_recipe(_args())
    r = bench.method_recipe(base, method, 1, [20, 15])
    r.student.validate("[student]")
    r.distill.validate()
    assert r.distill.mode == mode and r.distill.seed == 1
    assert r.distill.ce_weight == (1.0 if method == "kd_ce" else 0.0)  # only kd_ce adds the hard labels to KD
    total = r.distill.max_steps + (r.student.stage_steps * (len(r.student.stages) - 1) if r.student.stages else 0)
    assert total == 10
    if method == "progressive":
        assert r.student.stages == [20, 15] and r.student.stage_steps == 5 and r.student.num_layers is None
    assert base.distill.seed == 0  # the base recipe is not changed


def test_precision_learning_rate_and_mlp_width_reach_every_run_and_the_budget(bench):
    from types import SimpleNamespace

    base = bench.base_recipe(_args(precision="bf16", intermediate_size=1024))
    assert {bench.method_recipe(base, m, 0, [20, 15]).distill.precision for m in bench.METHODS} == {"bf16"}
    assert {bench.method_recipe(base, m, 0, [20, 15]).student.intermediate_size for m in bench.METHODS} == {1024}
    assert bench.base_recipe(_args()).student.intermediate_size is None  # default: the teacher's width
    ctx = SimpleNamespace(teacher_test=SimpleNamespace(ppl=50.0), train=[0] * 8)
    h = bench.headline(_args(precision="bf16", seeds=1, lr=1e-3, intermediate_size=1024), ctx, [], [], [20, 15],
                       None)
    assert h["budget"]["precision"] == "bf16" and h["budget"]["learning_rate"] == 1e-3
    assert h["budget"]["student_mlp_width"] == 1024
    assert {bench.method_recipe(bench.base_recipe(_args(lr=1e-3)), m, 0, [20, 15]).distill.learning_rate
            for m in bench.METHODS} == {1e-3}


def test_markdown_carries_the_headline(bench):
    res = {"smoke": True, "host": "x", "headline": {"kd_ppl": 1.5, "budget": {"steps": 4}},
           "runs": [{"method": "kd", "seed": 0, "layers": [0, 1], "ppl_before": 9.0, "ppl_after": 3.0,
                     "agreement": 0.5, "steps": 4, "train_seconds": 1.0, "tokens_per_s": 2.0, "stages": None}],
           "export": None, "generations": [{"topic": "ai", "prompt": "What is AI?", "teacher": "a", "student": "b"}]}
    md = bench.render_md(res)
    assert "SMOKE" in md and "| `kd_ppl` | 1.5 |" in md and "| kd | 0 | 2 | 9.00 | 3.00 |" in md
    assert "What is AI?" in md


def test_a_finished_run_is_read_back_not_retrained(bench, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from llm_tiny import tiny_llama

    calls = []

    def fake_distill(ctx, recipe):
        calls.append(recipe.name)
        stats = {"ppl": 9.0, "agreement": 0.5}
        return tiny_llama(layers=2), {"student": {"layers": [0, 3], "test_before": stats, "test_after": stats},
                                      "distill": {"steps": 10, "train_seconds": 1.0, "tokens_per_s": 2.0},
                                      "elapsed_s": 1.0}

    monkeypatch.setattr(bench, "distill_llm", fake_distill)
    ctx = SimpleNamespace(ref=SimpleNamespace(sha256="ab" * 32))
    base = bench.base_recipe(_args())
    r0 = bench.method_recipe(base, "kd", 0, [20, 15])
    rec, student = bench.run_method(ctx, r0, "kd", 0, tmp_path, keep=True)
    again, student2 = bench.run_method(ctx, r0, "kd", 0, tmp_path, keep=True)
    assert calls == ["kd-s0"] and again == rec and rec["ppl_after"] == 9.0
    a, b = student.state_dict(), student2.state_dict()
    assert all((a[k] == b[k]).all() for k in a)  # the kept student comes back too
    bench.run_method(ctx, bench.method_recipe(base, "kd", 1, [20, 15]), "kd", 1, tmp_path, keep=False)
    bench.run_method(ctx, bench.method_recipe(bench.base_recipe(_args(steps=11)), "kd", 0, [20, 15]), "kd", 0,
                     tmp_path, keep=False)
    assert calls == ["kd-s0", "kd-s1", "kd-s0"]  # another seed or budget is another run


def test_headline_takes_the_one_thread_speedup(bench):
    from types import SimpleNamespace

    ctx = SimpleNamespace(teacher_test=SimpleNamespace(ppl=50.0), train=[0] * 8)
    runs = [{"method": m, "seed": s, "ppl_before": 700.0, "ppl_after": p}
            for m, s, p in (("nokd", 0, 150.0), ("nokd", 1, 154.0), ("kd", 0, 120.0), ("kd", 1, 121.0),
                            ("kd_ce", 0, 110.0), ("kd_ce", 1, 112.0), ("seq_kd", 0, 160.0))]
    export = {"teacher_fp32_bytes": 800, "student_pte_bytes": 100, "decode_speedup": {"1": 2.5, "2": 1.5}}
    h = bench.headline(_args(seeds=2), ctx, runs, ["nokd", "kd", "kd_ce", "seq_kd"], [20, 15], export)
    assert h["kd_ppl"] == 120.5 and h["nokd_ppl"] == 152.0 and h["ppl_noise"] == 4.0 and h["seq_kd_ppl"] == 160.0
    assert h["kd_ce_ppl"] == 111.0
    assert h["size_ratio"] == 8.0 and h["decode_speedup_same_scheme"] == 2.5
    assert h["decode_speedup_by_threads"] == {"1": 2.5, "2": 1.5} and h["budget"]["steps"] == 10


def test_the_script_runs_from_the_command_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "--reuse" in out.stdout and "--prompt-tokens" in out.stdout


def test_every_method_trains_with_the_chat_mix_and_the_headline_reports_kd_ce_chat(bench):
    from types import SimpleNamespace

    base = bench.base_recipe(_args())
    base.data.validate("[data]")
    for m in ("nokd", "kd_ce", "on_policy"):
        d = bench.method_recipe(base, m, 0, [20, 15]).data
        assert (d.chat_ratio, d.chat_prompts, d.chat_eval_prompts, d.chat_answer_tokens) == (0.25, 8, 4, 8)
    chat = lambda rate: {"chat_nonempty_rate": rate, "chat_rougeL_vs_teacher": rate / 2, "chat_agreement": 0.4,  # noqa: E731
                         "teacher_nonempty_rate": 1.0, "nonempty_by_source": {"chatterbot": rate}, "prompts": 4,
                         "max_new_tokens": 8, "examples": [{"prompt": "Hi?", "teacher": "Hello!", "student": ""}]}
    runs = [{"method": m, "seed": s, "ppl_before": 700.0, "ppl_after": 100.0, "chat": chat(r)}
            for m, s, r in (("kd", 0, 0.5), ("kd_ce", 1, 0.7), ("kd_ce", 0, 0.9))]
    ctx = SimpleNamespace(teacher_test=SimpleNamespace(ppl=50.0), train=[0] * 8)
    h = bench.headline(_args(seeds=2), ctx, runs, ["kd", "kd_ce"], [20, 15], None)
    assert h["chat_nonempty_rate"] == 0.9 and h["chat_rougeL_vs_teacher"] == 0.45 and h["chat_method"] == "kd_ce"
    assert bench.pick_chat_run(runs[:1])["method"] == "kd" and bench.pick_chat_run([{**runs[0], "chat": None}]) is None
    for r in runs:
        r.update(layers=[0], agreement=0.5, steps=4, train_seconds=1.0, tokens_per_s=2.0, stages=None)
    md = bench.render_md({"smoke": False, "host": "x", "headline": h, "runs": runs, "export": None, "generations": [],
                          "args": {"chat_ratio": 0.25}})
    assert "| `chat_nonempty_rate` | 0.9 |" in md and "| Hi? | Hello! | *(empty)* |" in md
    assert "| kd_ce | 0 | 1 | 700.00 | 100.00 | 0.5 | 0.9 | 0.45 |" in md


def test_best_kd_is_chosen_on_validation_and_reported_on_test(bench):
    runs = [{"method": m, "seed": s, "ppl_after": t, "val_ppl": v}
            for m, s, t, v in (("nokd", 0, 100.0, 90.0), ("nokd", 1, 101.0, 91.0), ("kd", 0, 95.0, 88.0),
                               ("kd_ce", 0, 90.0, 89.0), ("kd_ce", 1, 92.0, 89.5), ("seq_kd", 0, 80.0, None))]
    got = bench.best_kd(runs, teacher_ppl=60.0, nokd_ppl=100.5, noise=1.0)
    # kd has the lowest validation ppl although kd_ce (and seq_kd, unvalidated) are lower on test
    assert got["best_kd_method"] == "kd" and got["best_kd_ppl"] == 95.0 and got["best_kd_val_ppl"] == 88.0
    assert got["best_kd_beats_nokd_beyond_noise"] is True and got["best_kd_within_1_5x_teacher"] is False
    assert bench.best_kd(runs, teacher_ppl=64.0, nokd_ppl=95.5, noise=1.0)["best_kd_within_1_5x_teacher"] is True
    assert bench.best_kd(runs, 64.0, 95.5, 1.0)["best_kd_beats_nokd_beyond_noise"] is False
    assert bench.best_kd([{**r, "val_ppl": None} for r in runs], 60.0, 100.0, 1.0) == {}  # older records


def test_a_new_run_keeps_the_blocks_other_scripts_attached(bench, tmp_path):
    import json

    stored = tmp_path / "llm.json"
    assert bench.attached(stored) == {}
    stored.write_text(json.dumps({"headline": {"kd_ppl": 1.0, "chat_source": "x", "qad": {"ppl": 2},
                                               "decode_vs_optimum_executorch": 0.9,
                                               "decode_vs_optimum_executorch_source": "y"}}))
    assert bench.attached(stored) == {"qad": {"ppl": 2}, "decode_vs_optimum_executorch": 0.9,
                                      "decode_vs_optimum_executorch_source": "y"}


def test_a_longer_budget_is_attached_beside_the_full_comparison(bench, tmp_path):
    import json

    stored = tmp_path / "llm.json"
    full = {"smoke": False, "host": "h", "args": {"chat_ratio": 0.25}, "export": None, "generations": [],
            "runs": [], "headline": {"best_kd_ppl": 110.0, "budget": {"steps": 200}, "qad": {"ppl": 2}}}
    stored.write_text(json.dumps(full))
    long = {"host": "AMD EPYC",
            "headline": {"best_kd_ppl": 95.6, "nokd_ppl": 99.0, "budget": {"steps": 1000}, "size_ratio": None},
            "runs": [{"method": "nokd", "seed": 0, "val_curve": [[0, 500.0], [100, 129.0]]},
                     {"method": "kd_ce", "seed": 0}]}
    bench.attach_long_budget(stored, long, tmp_path / "llm_long.json")
    doc = json.loads(stored.read_text())
    h = doc["headline"]
    assert h["best_kd_ppl"] == 110.0 and h["qad"] == {"ppl": 2}  # the full comparison's own keys stay
    lb = h["long_budget"]
    assert lb["best_kd_ppl"] == 95.6 and lb["nokd_ppl"] == 99.0 and lb["budget"] == {"steps": 1000}
    assert "size_ratio" not in lb and lb["val_curves"] == {"nokd-s0": [[0, 500.0], [100, 129.0]]}
    assert lb["host"] == "AMD EPYC" and "llm_long.json" in lb["source"]
    assert "long_budget" in (tmp_path / "llm.md").read_text()
    assert "long_budget" in bench.attached(stored)  # and a rerun of the full comparison keeps it


def test_a_progressive_run_counts_its_healing_stages_steps(bench):
    assert bench.total_steps({"stages": [{"steps": 100}]}, {"steps": 100}) == 200
    assert bench.total_steps({"stages": None}, {"steps": 200}) == 200
