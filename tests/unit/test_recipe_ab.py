"""benchmarks/recipe_ab.py: variant specs parse to recipe changes, and the written variant recipe loads with them."""

import pytest
from conftest import BENCHMARKS, load_benchmark

from edgedistill.recipe import load_recipe


@pytest.fixture(scope="module")
def ab():
    return load_benchmark("recipe_ab")  # it puts benchmarks/ on sys.path itself, for its sibling qad.py


def test_variants_parse_and_apply_to_the_headline_recipe(ab, tmp_path):
    specs = ab.parse_variants(["pair:distill.losses={cosine = 1.0, pair_similarity = 2.5}",
                               'brown:data.extra_texts=["brown", "chatterbot"]', "brown:data.extra_texts_limit=20000"])
    assert list(specs) == ["pair", "brown"]
    assert specs["pair"] == {("distill", "losses"): {"cosine": 1.0, "pair_similarity": 2.5}}
    base = BENCHMARKS.parent / "examples" / "headline.toml"
    recipe = load_recipe(ab.variant_recipe(base, specs["brown"], tmp_path / "brown"))
    same = load_recipe(base)
    assert recipe.data.extra_texts == ["brown", "chatterbot"] and recipe.data.extra_texts_limit == 20000
    assert recipe.student == same.student and recipe.distill == same.distill and recipe.teacher == same.teacher
    pair = load_recipe(ab.variant_recipe(base, specs["pair"], tmp_path / "pair"))
    assert pair.distill.losses == {"cosine": 1.0, "pair_similarity": 2.5}
    assert ab.at_steps(pair, 30).distill.max_steps == 30 and ab.at_steps(pair, 30).distill.eval_every == 30


@pytest.mark.parametrize("spec", ["nocolon", "x:distill.losses", "x:losses=1", "x:distill.max_steps=[1,"])
def test_bad_variant_specs_are_one_line_errors(ab, spec):
    with pytest.raises(SystemExit, match="--variant"):
        ab.parse_variants([spec])
