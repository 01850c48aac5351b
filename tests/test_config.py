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


def test_invalid_model_combination_is_refused_when_the_recipe_is_read():
    """ModelConfig's own check runs on the [model] section as the recipe is read, not at pre-training."""
    with pytest.raises(RecipeError, match=r"tiny.toml \(with --set overrides\): model: .*n_kv_heads=3"):
        load_recipe(RECIPES / "tiny.toml", Recipe, ["model.n_kv_heads=3"])


def test_parse_override_forms():
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=hello world") == (["a", "b"], "hello world")
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_override("a.b")


@pytest.mark.parametrize("name", ["small-gpu.toml", "internlm2-1.8b.toml", "internlm2-7b.toml"])
def test_gpu_recipes_build_on_the_meta_device(name):
    """The multi-GPU recipes are validated without training: every stage's model builds on the
    meta device with the preset's size, and every batch splits over 8 processes."""
    import torch

    from lmforge.model import InternLM2, num_params
    from lmforge.train.config import train_stage_configs

    recipe = load_recipe(RECIPES / name, Recipe)
    cfg = model_config(recipe.model, vocab_size=32768)
    stages = train_stage_configs(recipe.train)
    assert [s[0] for s in stages][-1] in ("long", "32k") and len(stages) == 2
    short, long = stages[0][2], stages[1][2]
    assert long.seq_len == 8 * short.seq_len and long.rope_theta == 1_000_000.0 and short.rope_theta == 50_000.0
    for _, tc, stage in stages:
        assert tc.global_batch % (tc.micro_batch * 8) == 0, (name, stage.name)
        with torch.device("meta"):
            model = InternLM2(cfg.replace(rope_theta=stage.rope_theta, max_seq_len=stage.max_seq_len))
        assert model.num_params() == num_params(model.cfg)
    if name.startswith("internlm2-7b"):
        assert abs(num_params(cfg) - 7.74e9) < 0.01e9 and cfg.vocab_size == 92544
