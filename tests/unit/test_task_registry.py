"""The task registry, the Strategy protocol and typed per-strategy options (issue 13, item 1)."""

import dataclasses
import re
from pathlib import Path

import pytest

from edgedistill.distill.options import NoOptions, option_names
from edgedistill.distill.protocol import Strategy, StrategyBase
from edgedistill.distill.strategies import STRATEGIES
from edgedistill.errors import RecipeError
from edgedistill.recipe import DistillSpec, load_recipe
from edgedistill.tasks import TASKS, file_task, get_task, task_of

PKG = Path(__file__).resolve().parents[2] / "edgedistill"
ENCODER_HOOKS = ("export_graph", "graph_inputs", "finish_graph", "et_prepare", "distill", "exporter", "bench_quality",
                 "bench_extras")


def test_every_task_declares_what_each_stage_needs():
    assert set(TASKS) == {"embedding", "classification", "causal-lm"}
    for task in TASKS.values():
        assert task.bundle_task and task.sections and task.outputs and task.runtime_api and task.report_rows
        assert dataclasses.is_dataclass(task.options), task.name
        assert task.strategies, f"{task.name} has no way to train"
        if task.pipeline is None:  # encoder tasks run through the shared stages
            assert all(callable(getattr(task, h)) for h in ENCODER_HOOKS), task.name
        else:  # a task with its own recipe kind recognises its files
            assert callable(task.is_recipe)


def test_every_strategy_follows_the_protocol_and_belongs_to_a_task():
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, StrategyBase), name
        assert cls.task in TASKS and name in get_task(cls.task).strategies
        assert dataclasses.is_dataclass(cls.Options) and issubclass(cls.Options, NoOptions), name
        # a strategy's options extend its task's shared options
        assert issubclass(cls.Options, get_task(cls.task).options), name
        for method in ("loss", "teacher_hidden_indices"):
            assert callable(getattr(cls, method, None)), (name, method)
    from edgedistill.distill.strategies import EmbeddingStrategy

    assert isinstance(EmbeddingStrategy({"cosine": 1.0}, {}, "mean", True), Strategy)


def test_no_stage_probes_strategies_or_branches_on_a_task_name():
    probes = re.compile(r"(hasattr|getattr)\((self\.)?strategy\b")
    bad = [f"{p.relative_to(PKG)}" for p in PKG.glob("distill/*.py") if probes.search(p.read_text())]
    assert not bad, f"hasattr/getattr probing of a strategy in {bad}: add a hook to StrategyBase instead"
    # (opening a bundle by its manifest's kind is the runtime's business, not a recipe task's)
    names = re.compile(r"""(==|!=)\s*["'](classification|embedding)["']|CLASSIFICATION\b|is_llm_recipe""")
    stages = ["api.py", "distill/stage.py", "export/stage.py", "bench/stage.py", "export/executorch.py"]
    bad = [s for s in stages if names.search((PKG / s).read_text())]
    assert not bad, f"{bad} branch on a task's name: call a hook of the task record instead"


def test_a_key_of_another_strategy_names_the_strategies_that_take_it():
    with pytest.raises(RecipeError, match=r"r.toml: \[distill\] key 'peers': applies to strategies mutual, "
                                          r"online_ensemble, not to strategy 'classification'"):
        DistillSpec.from_table({"strategy": "classification", "peers": 3}, "r.toml: [distill]")
    with pytest.raises(RecipeError, match=r"unknown key 'frobnicate' \(allowed with strategy 'mutual': .*peers"):
        DistillSpec.from_table({"strategy": "mutual", "frobnicate": 1}, "r.toml: [distill]")
    spec = DistillSpec.from_table({"strategy": "mutual", "peers": 3, "temperature": 1.5})
    assert (spec.options.peers, spec.options.temperature) == (3, 1.5)
    with pytest.raises(RecipeError, match=r"key 'peers': expected 2..16, got 40"):
        DistillSpec.from_table({"strategy": "mutual", "peers": 40})
    with pytest.raises(RecipeError, match=r"key 'peers': expected an integer"):
        DistillSpec.from_table({"strategy": "mutual", "peers": "3"})


def test_switching_strategy_keeps_shared_options_and_drops_the_others():
    spec = DistillSpec.from_table({"strategy": "mutual", "peers": 3, "temperature": 1.5})
    ema = spec.replace(strategy="ema_self", ema_decay=0.9)
    assert type(ema.options).__name__ == "EmaOptions"
    assert (ema.options.temperature, ema.options.ema_decay) == (1.5, 0.9) and "peers" not in option_names(
        type(ema.options))
    assert spec.replace(strategy="embedding").options == NoOptions()


def test_recipe_files_keep_strategy_keys_flat_and_hash_them(tmp_path):
    text = ('name = "r"\n[teacher]\npath = "t"\n[data]\nsource = "jsonl"\npath = "d.jsonl"\n'
            '[distill]\nstrategy = "self_layerwise"\nexit_weight = 0.5\nlosses = { kd = 1.0 }\n')
    (tmp_path / "r.toml").write_text(text)
    r = load_recipe(tmp_path / "r.toml")
    assert r.distill.options.exit_weight == 0.5 and r.to_dict()["distill"]["exit_weight"] == 0.5
    (tmp_path / "r.toml").write_text(text.replace("0.5", "0.25"))
    assert load_recipe(tmp_path / "r.toml").sha256() != r.sha256()


def test_a_recipe_file_of_its_own_kind_finds_its_task(tmp_path):
    llm = tmp_path / "llm.toml"
    llm.write_text('kind = "llm"\nname = "x"\n')
    enc = tmp_path / "enc.toml"
    enc.write_text('name = "x"\n')
    assert file_task(llm).name == "causal-lm" and file_task(enc) is None and file_task(tmp_path / "no.toml") is None


def test_task_of_a_recipe_follows_its_strategy(tmp_path):
    for strategy, task in (("embedding", "embedding"), ("stagewise", "classification")):
        (tmp_path / "r.toml").write_text(f'name = "r"\n[teacher]\npath = "t"\n[distill]\nstrategy = "{strategy}"\n'
                                         'losses = { hidden_mse = 1.0 }\n')
        assert task_of(load_recipe(tmp_path / "r.toml")).name == task
