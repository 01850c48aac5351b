"""Data recipes are checked strictly: errors name the file and the key."""

from __future__ import annotations

import argparse

import pytest

from lmforge.config import RecipeError
from lmforge.data.cli import register
from lmforge.data.dedup.stage import DedupStage
from lmforge.data.pipeline import build_pipeline, load_pipeline
from tests.data.conftest import DEMO_RECIPE


def minimal(**stage) -> dict:
    return {"pipeline": {"input": "in", "output": "out"}, "stage": [{"name": "s", "steps": [], **stage}]}


def test_demo_recipe_loads():
    p = load_pipeline(DEMO_RECIPE)
    assert [s.name for s in p.stages] == ["format", "clean", "dedup", "safe", "quality", "tokens", "longctx"]
    dedup = p.stages[2]
    assert isinstance(dedup, DedupStage) and dedup.params.num_perm == 128 and dedup.params.ngram == 5
    assert dedup.params.bands * dedup.params.rows <= 128
    assert p.branches == ["longctx"] and p.stages[-1].input_dir.endswith("quality")


@pytest.mark.parametrize("data,message", [
    (minimal(steps=[{"step": "gopher_qualty"}]), "unknown step 'gopher_qualty'; did you mean 'gopher_quality'?"),
    (minimal(steps=[{"step": "gopher_quality", "min_doc_wrds": 3}]),
     "unknown key 'stage[0].steps[0].min_doc_wrds'; did you mean 'stage[0].steps[0].min_doc_words'?"),
    (minimal(steps=[{"step": "langid", "min_score": "high"}]), "stage[0].steps[0].min_score = 'high': expected a number"),
    (minimal(stepz=[]), "unknown key 'stage[0].stepz'; did you mean 'stage[0].steps'?"),
    (minimal(input="nowhere"), "stage[0].input = 'nowhere': no earlier stage has that name"),
    (minimal(steps=[{"step": "minhash_dedup"}, {"step": "ids"}]), "must be the only step of its stage"),
    (minimal(steps=[{"step": "minhash_dedup", "hash_family": "md5"}]), "hash_family 'md5'"),
    (minimal(steps=[{"step": "tokenize"}, {"step": "ids"}]), "must come last"),
    ({"pipeline": {"input": "in", "output": "out", "executor": "slurm"}, "stage": []}, "pipeline.executor = 'slurm'"),
    ({"pipeline": {"input": "in", "outptu": "out"}}, "unknown key 'pipeline.outptu'"),
])
def test_bad_recipes_are_refused_with_the_key_named(data, message):
    with pytest.raises(RecipeError) as e:
        build_pipeline(data, "recipes/x.toml")
    assert "recipes/x.toml" in str(e.value) and message in str(e.value)


def test_overrides_and_missing_file(tmp_path):
    p = load_pipeline(DEMO_RECIPE, ["pipeline.tasks=8", "pipeline.executor=\"ray\""])
    assert p.section.tasks == 8 and p.section.executor == "ray" and p.stages[0].tasks == 8
    with pytest.raises(RecipeError, match="recipe not found"):
        load_pipeline(tmp_path / "none.toml")


def test_cli_reports_recipe_errors(tmp_path, capsys):
    from lmforge.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline]\ninput = "in"\noutput = "out"\n[[stage]]\nname = "s"\nsteps = [{ step = "nope" }]\n')
    assert main(["data", "run", str(bad)]) == 1
    assert "unknown step 'nope'" in capsys.readouterr().err


def test_cli_register_adds_the_data_command():
    parser = argparse.ArgumentParser(prog="lmforge")
    register(parser.add_subparsers(dest="command"))
    for argv in (["data", "run", "r.toml", "--set", "pipeline.tasks=2"], ["data", "demo-crawl", "out"],
                 ["data", "report", "runs/x"], ["data", "train-classifier", "--input", "a", "--out", "b.npz"]):
        args = parser.parse_args(argv)
        assert callable(args.fn)
