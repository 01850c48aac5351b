"""`lmforge run recipes/tiny-vl.toml`, shrunk to seconds: the vision-language stages after the text
ones, their InternVL checkpoints, the report's section, and a rerun that skips what is done."""

import json
from pathlib import Path

import pytest

from lmforge.config import load_recipe
from lmforge.recipe import Recipe
from lmforge.run import run

ROOT = Path(__file__).resolve().parents[1]
TINY_VL = ROOT / "recipes" / "tiny-vl.toml"
SMALL = ["train.steps=6", "train.val_every=0", "train.ckpt_every=6", "tokenizer.vocab_size=600",
         "tokenizer.max_chars=50000", "eval.bpb_max_chars=2000", "sample.max_new_tokens=4",
         "vl.train_images=24", "vl.heldout_images=6", "vl.pretrain_steps=3", "vl.sft_steps=2", "vl.mpo_steps=2",
         "vl.mpo_questions=6", "vl.mpo_samples=3", "vl.mpo_temperature=2.0", "vl.global_batch=4",
         "vl.micro_batch=4", "vl.max_new_tokens=3", "vl.eval_examples=2"]


@pytest.fixture(scope="module")
def vl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-vl")
    recipe = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{out}"', *SMALL])
    return out, recipe, run(recipe, TINY_VL.parent)


def test_vl_stages_write_internvl_checkpoints_and_the_report(vl_run):
    out, _, report = vl_run
    for stage in ("vl_pretrain", "vl_sft", "vl_mpo"):
        assert report["timings"][stage]["status"] == "ran"
        config = json.loads((out / stage / "model" / "config.json").read_text())
        assert config["model_type"] == "internvl"
        assert (out / stage / "model" / "tokenizer.json").is_file()
    mpo = json.loads((out / "vl_mpo" / "vl_mpo.json").read_text())
    assert report["vl_mpo"]["accuracy_after"] == mpo["accuracy_after"]  # the report reads the stage's file
    assert 0 <= mpo["accuracy_after"]["accuracy"] <= 1 and mpo["pairs"]["questions"] == 6
    assert len(mpo["samples"]) == 2 and (out / "vl_mpo" / mpo["samples"][0]["image"]).is_file()
    md = (out / "report.md").read_text()
    assert "Vision-language (InternVL3-style)" in md and "MPO" in md


def test_rerun_skips_the_vl_stages(vl_run):
    out, recipe, _ = vl_run
    again = run(recipe, TINY_VL.parent)
    assert {again["timings"][s]["status"] for s in ("vl_pretrain", "vl_sft", "vl_mpo")} == {"skipped"}


def test_vl_without_image_tokens_is_refused_up_front(tmp_path):
    from lmforge.lifecycle.check import RecipeError

    recipe = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{tmp_path}"', "tokenizer.image_tokens=false"])
    with pytest.raises(RecipeError, match="tokenizer.image_tokens = true"):
        run(recipe, TINY_VL.parent)
    assert not (tmp_path / "data").exists()
