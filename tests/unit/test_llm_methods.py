"""The new [student]/[distill] keys through the recipe and the stage, on a tiny random Llama."""

import json

import pytest
from llm_tiny import save_tiny_llama, tiny_text

from edgedistill.errors import RecipeError
from edgedistill.llm.recipe import load_llm_recipe
from edgedistill.llm.stage import distill_llm, prepare_llm


def _recipe(tmp_path, teacher, student=None, **distill):
    (tmp_path / "text.txt").write_text("\n\n".join(tiny_text(80, words=40)))
    d = {"mode": "kd", "top_k": 4, "max_steps": 2, "batch_size": 2, "eval_every": 2, "learning_rate": 3e-3,
         "warmup_steps": 1, "gen_tokens": 4, "prompt_tokens": 4, "seq_kd_prompts": 12, **distill}
    s = {"num_layers": 2, "importance": "cosine", "calibration_blocks": 2, **(student or {})}
    s = {k: v for k, v in s.items() if v is not None}
    fmt = lambda t: "\n".join(f"{k} = {json.dumps(v)}" for k, v in t.items())  # noqa: E731
    path = tmp_path / "llm.toml"
    path.write_text(f'name = "tiny"\nkind = "llm"\n[teacher]\npath = "{teacher}"\n'
                    f'[data]\nsource = "txt"\npath = "text.txt"\nblock_size = 16\nval_blocks = 4\ntest_blocks = 4\n'
                    f"[student]\n{fmt(s)}\n[distill]\n{fmt(d)}\n")
    return path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("m")
    teacher = save_tiny_llama(tmp / "teacher", layers=5)
    return tmp, teacher, prepare_llm(load_llm_recipe(_recipe(tmp, teacher)))


@pytest.mark.parametrize("student,distill,msg", [
    ({"stages": [2, 4], "num_layers": None}, {}, "strictly decreasing"),
    ({"stages": [4, 2], "num_layers": 3}, {}, "must equal the last of 'stages'"),
    ({"stages": [4, 2], "num_layers": None, "importance": "even"}, {}, "by importance"),
    ({"stages": [4, 2], "num_layers": None, "stage_teacher": "boss"}, {}, "stage_teacher"),
    ({"stage_steps": -1}, {}, "stage_steps"),
    ({}, {"mode": "on_policy", "on_policy_fraction": 1.5}, "on_policy_fraction': expected 0..1"),
    ({}, {"mode": "on_policy", "on_policy_fraction": -0.1}, "on_policy_fraction"),
    ({}, {"prompts": "web"}, "prompts"),
    ({}, {"gen_tokens": 0}, "gen_tokens"),
    ({}, {"seq_kd_prompts": 0}, "seq_kd_prompts"),
])
def test_bad_new_keys_are_one_line_errors(tmp_path, student, distill, msg):
    with pytest.raises(RecipeError, match=msg) as e:
        load_llm_recipe(_recipe(tmp_path, tmp_path / "t", student, **distill))
    assert "\n" not in str(e.value)


def test_progressive_recipe_reports_each_stage(ctx):
    tmp, teacher, c = ctx
    r = load_llm_recipe(_recipe(tmp, teacher, {"stages": [4, 3, 2], "num_layers": None, "stage_steps": 1}))
    student, report = distill_llm(c, r)
    stages = report["student"]["stages"]
    assert [s["num_layers"] for s in stages] == [4, 3, 2] and student.config.num_hidden_layers == 2
    assert report["student"]["layers"] == stages[-1]["layers"] and stages[0]["steps"] == 1


@pytest.mark.parametrize("mode,extra", [("seq_kd", {}), ("seq_kd", {"seq_kd_topk": True}),
                                        ("on_policy", {"on_policy_fraction": 0.5})])
def test_seq_kd_and_on_policy_through_the_stage(ctx, mode, extra):
    tmp, teacher, c = ctx
    student, report = distill_llm(c, load_llm_recipe(_recipe(tmp, teacher, mode=mode, **extra)))
    d = report["distill"]
    assert d["mode"] == mode and d["steps"] == 2 and d["n_prompts"] > 0
    if mode == "seq_kd":
        assert d["seq_blocks"] >= 1 and "seq_cache" in d
