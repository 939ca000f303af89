"""benchmarks/llm.py helpers: every method gets the same step budget; the markdown renders the headline."""

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_llm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(**kw):
    d = dict(block=64, train_blocks=16, val_blocks=2, test_blocks=4, layers=15, calib=2, lr=3e-4, warmup=1,
             steps=10, batch=2, eval_every=5, gen_tokens=8, seq_kd_prompts=8)
    return argparse.Namespace(**(d | kw))


@pytest.mark.parametrize("method,mode", [("nokd", "nokd"), ("kd", "kd"), ("seq_kd", "seq_kd"),
                                         ("on_policy", "on_policy"), ("progressive", "kd")])
def test_each_method_gets_the_same_budget(bench, method, mode):
    base = bench.base_recipe(_args())
    r = bench.method_recipe(base, method, 1, [20, 15])
    r.student.validate("[student]")
    r.distill.validate()
    assert r.distill.mode == mode and r.distill.seed == 1
    total = r.distill.max_steps + (r.student.stage_steps * (len(r.student.stages) - 1) if r.student.stages else 0)
    assert total == 10
    if method == "progressive":
        assert r.student.stages == [20, 15] and r.student.stage_steps == 5 and r.student.num_layers is None
    assert base.distill.seed == 0  # the base recipe is not changed


def test_markdown_carries_the_headline(bench):
    res = {"smoke": True, "host": "x", "headline": {"kd_ppl": 1.5, "budget": {"steps": 4}},
           "runs": [{"method": "kd", "seed": 0, "layers": [0, 1], "ppl_before": 9.0, "ppl_after": 3.0,
                     "agreement": 0.5, "steps": 4, "train_seconds": 1.0, "tokens_per_s": 2.0, "stages": None}],
           "export": None, "generations": [{"topic": "ai", "prompt": "What is AI?", "teacher": "a", "student": "b"}]}
    md = bench.render_md(res)
    assert "SMOKE" in md and "| `kd_ppl` | 1.5 |" in md and "| kd | 0 | 2 | 9.00 | 3.00 |" in md
    assert "What is AI?" in md
