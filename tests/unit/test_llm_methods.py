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


def _context(tmp_path_factory, layers):
    tmp = tmp_path_factory.mktemp("m")
    teacher = save_tiny_llama(tmp / "teacher", layers=layers)
    return tmp, teacher, prepare_llm(load_llm_recipe(_recipe(tmp, teacher)))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return _context(tmp_path_factory, 5)


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


def test_hidden_transfer_by_hand():
    import torch

    from edgedistill.llm.train import hidden_transfer

    s = (torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.full((1, 2, 2), 3.0))
    t = (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0), torch.ones(1, 2, 2))
    # mse: student block 0 -> teacher block 1 (|1 - 2|^2 = 1), block 1 -> teacher block 2 (|3 - 1|^2 = 4): mean 2.5
    assert hidden_transfer(s, t, {0: 1, 1: 2}, "mse").item() == pytest.approx(2.5)
    assert hidden_transfer(s, t, {1: 1}, "mse").item() == pytest.approx(1.0)
    # relative, per token: block 0: 2 x 1 / (2 x 4) = 0.25; block 1: 2 x 4 / (2 x 1) = 4: mean 2.125
    assert hidden_transfer(s, t, {0: 1, 1: 2}).item() == pytest.approx(2.125)


def test_relative_hidden_transfer_weighs_every_token_alike():
    import torch

    from edgedistill.llm.train import hidden_transfer

    t = torch.ones(1, 2, 4)
    t[0, 0] *= 100.0  # a "massive activation" token
    s = t * 0.9  # every token off by 10 %
    states_s, states_t = (None, s), (None, t)
    assert hidden_transfer(states_s, states_t, {0: 0}).item() == pytest.approx(0.01)
    # the plain MSE is the big token's error: 10,000 x the small one's
    assert hidden_transfer(states_s, states_t, {0: 0}, "mse").item() == pytest.approx((10.0 ** 2 + 0.1 ** 2) / 2)


def test_hidden_state_transfer_through_the_stage_keeps_states_near_the_teacher(ctx):
    tmp, teacher, c = ctx

    def run(weight):
        # Block 1 (copied from teacher block 2) reads block 0's output, not teacher block 1's: its states
        # drift from the teacher's as the student trains; the term pulls them back.
        r = load_llm_recipe(_recipe(tmp, teacher, {"layers": [0, 2, 4], "num_layers": None}, mode="nokd",
                                    hidden_weight=weight, max_steps=8, eval_every=1))
        return distill_llm(c, r)[1]

    strong, weak = run(1e4), run(1e-6)
    # every student block but the last maps to the teacher block it was copied from
    assert strong["student"]["layers"] == [0, 2, 4] and strong["distill"]["hidden_map"] == {"0": 0, "1": 2}
    terms = {name: [h["hidden"] for h in rep["distill"]["history"] if "hidden" in h]  # [0]: untrained validation
             for name, rep in (("strong", strong), ("weak", weak))}
    assert len(terms["strong"]) == 8
    assert terms["strong"][-1] < terms["weak"][-1] / 2


def test_hidden_transfer_takes_kd_targets_from_the_live_teacher_pass(ctx):
    import torch

    from edgedistill.llm.student import plan_student
    from edgedistill.llm.topk_cache import teacher_topk
    from edgedistill.llm.train import TrainConfig, _step_loss, hidden_block_map

    tmp, teacher, c = ctx
    student, plan = plan_student(c.teacher, c.train[:2], layers=[0, 2, 4])
    ids = torch.from_numpy(c.train[:2].astype("int64"))
    cfg = TrainConfig(mode="kd", ce_weight=1.0, hidden_weight=0.5, chunk=512)
    hm = hidden_block_map(plan.layers)
    logp, idx = teacher_topk(c.teacher, ids, 4)  # what the cache would hold
    cached, _ = _step_loss(student, ids, logp, idx, cfg, c.teacher, hm, top_k=4)
    live, info = _step_loss(student, ids, None, None, cfg, c.teacher, hm, top_k=4)
    assert info["kd"] > 0 and live.item() == pytest.approx(cached.item(), rel=1e-5)
    other, _ = _step_loss(student, ids, None, None, cfg, c.teacher, hm, top_k=2)
    assert other.item() != pytest.approx(cached.item(), rel=1e-5)  # the live path does use top_k


def test_kd_with_hidden_transfer_builds_no_topk_cache(ctx, monkeypatch):
    import edgedistill.llm.methods as methods

    tmp, teacher, c = ctx
    monkeypatch.setattr(methods, "topk_of", lambda *a, **k: pytest.fail("a top-k cache was built"))
    r = load_llm_recipe(_recipe(tmp, teacher, {"layers": [0, 2, 4], "num_layers": None}, ce_weight=1.0,
                                hidden_weight=1.0))
    report = distill_llm(c, r)[1]
    assert report["distill"]["steps"] == 2 and report["distill"]["history"][-1]["kd"] > 0


@pytest.mark.parametrize("distill,msg", [({"hidden_weight": -1.0}, "hidden_weight': expected >= 0"),
                                         ({"hidden_loss": "cosine"}, "hidden_loss': expected one of"),
                                         ({"hidden_weight": 1.0, "mode": "on_policy"}, "mode 'kd' or 'nokd'")])
def test_hidden_weight_bad_values(tmp_path, distill, msg):
    with pytest.raises(RecipeError, match=msg):
        load_llm_recipe(_recipe(tmp_path, tmp_path / "t", **distill))


@pytest.mark.parametrize("stage_teacher", ["previous", "teacher"])
def test_hidden_transfer_after_progressive_shrinking_maps_through_the_stages(tmp_path_factory, stage_teacher):
    # 8 layers: the first stage drops middle layers, so teacher and previous-stage block numbers differ
    tmp, teacher, c = _context(tmp_path_factory, 8)
    r = load_llm_recipe(_recipe(tmp, teacher, {"stages": [6, 4], "num_layers": None, "stage_steps": 1,
                                               "stage_teacher": stage_teacher}, hidden_weight=1.0,
                                    hidden_loss="mse"))  # so the first stage keeps layers the two maps tell apart
    report = distill_llm(c, r)[1]
    first, last = (st["layers"] for st in report["student"]["stages"])  # teacher layer numbers
    # the last stage is compared with the block it was copied from, counted in the model that teaches it
    in_teacher = {str(i): j for i, j in enumerate(last[:-1])}
    in_previous = {str(i): first.index(j) for i, j in enumerate(last[:-1])}
    assert in_teacher != in_previous  # else this test could not tell the two maps apart
    assert report["distill"]["hidden_map"] == (in_previous if stage_teacher == "previous" else in_teacher)
    assert any("hidden" in h for h in report["distill"]["history"])
