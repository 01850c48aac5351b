"""Recipes: TOML -> dataclasses, overrides, and errors that name the key."""

from pathlib import Path

import pytest

from lmforge.config import RecipeError, load_recipe, parse_override
from lmforge.recipe import Recipe, model_config

RECIPES = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    if path.name.startswith("data-"):  # data-pipeline recipes have their own schema
        from lmforge.data.pipeline import load_pipeline

        assert load_pipeline(path).stages
        return
    recipe = load_recipe(path, Recipe)
    model_config(recipe.model, vocab_size=1000)


def test_overrides_are_typed():
    recipe = load_recipe(RECIPES / "tiny.toml", Recipe,
                         ["model.dim=256", "model.norm_head=true", "sample.temperature=0", "run.name=other",
                          "tokenizer.corpora=[\"english\"]"])
    assert recipe.model.dim == 256 and recipe.model.norm_head is True
    assert recipe.sample.temperature == 0.0 and isinstance(recipe.sample.temperature, float)
    assert recipe.run.name == "other" and recipe.tokenizer.corpora == ["english"]
    cfg = model_config(recipe.model, vocab_size=1000)
    assert cfg.dim == 256 and cfg.vocab_size == 1000 and cfg.n_layers == 4  # the rest from the preset


def test_recipe_value_wins_over_tokenizer_vocab():
    recipe = load_recipe(RECIPES / "tiny.toml", Recipe, ["model.vocab_size=5000"])
    assert model_config(recipe.model, vocab_size=1000).vocab_size == 5000


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(RecipeError, match=r"tiny\.toml.*unknown key 'model\.dimm'.*did you mean 'model\.dim'"):
        load_recipe(RECIPES / "tiny.toml", Recipe, ["model.dimm=3"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer]\nsteps = 3\n")
    with pytest.raises(RecipeError, match=r"bad\.toml.*unknown key 'trainer'"):
        load_recipe(bad, Recipe)


def test_bad_value_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"model\.dim = 'wide': expected an integer"):
        load_recipe(RECIPES / "tiny.toml", Recipe, ["model.dim=wide"])
    with pytest.raises(RecipeError, match=r"sample\.prompts = 3: expected a list"):
        load_recipe(RECIPES / "tiny.toml", Recipe, ["sample.prompts=3"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname=1")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad, Recipe)


def test_invalid_model_combination_is_reported_by_model_config():
    recipe = load_recipe(RECIPES / "tiny.toml", Recipe, ["model.n_kv_heads=3"])
    with pytest.raises(ValueError, match="n_kv_heads"):
        model_config(recipe.model)


def test_parse_override_forms():
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=hello world") == (["a", "b"], "hello world")
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_override("a.b")
