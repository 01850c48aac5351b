"""`lmforge run recipes/tiny-vl.toml`, shrunk to seconds: the vision-language stages after the text
ones, their InternVL checkpoints, the report's section, and a rerun that skips what is done."""

import json
import os
import signal
import subprocess
import sys
import time
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
    no_tower = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{tmp_path}"', 'vl.vision_init="/no/such/dir"'])
    with pytest.raises(RecipeError, match="vl.vision_init"):
        run(no_tower, TINY_VL.parent)
    bad_patch = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{tmp_path}"', "vl.patch_size=7"])
    with pytest.raises(RecipeError, match="image_size=64 is not divisible by patch_size=7"):
        run(bad_patch, TINY_VL.parent)
    assert not (tmp_path / "data").exists()


def test_user_data_joins_the_generated_set_and_bad_records_are_skipped(tmp_path, capsys):
    from lmforge.vl.format import write_vl_dataset
    from lmforge.vl.synth import demo_split

    examples, _ = demo_split(5, 1, seed=7)
    write_vl_dataset(examples, tmp_path / "mine")
    data = tmp_path / "mine" / "data.jsonl"
    with data.open("a") as f:
        f.write('{"image": "images/nope.png", "conversations": [{"from": "human", "value": "<image>hi"}, '
                '{"from": "gpt", "value": "x"}]}\n')
    out = tmp_path / "run"
    recipe = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{out}"', *SMALL, f'vl.data=["{data}"]',
                                           "vl.mpo_steps=1", "vl.sft_steps=1"])
    report = run(recipe, TINY_VL.parent)
    # 24 generated questions + 24 captions + the 5 good records of the user's file
    assert report["vl_pretrain"]["image_samples"] == 24 * 2 + 5
    assert report["vl_sft"]["questions"] == 24 + 5
    assert "skipped 1 bad record" in capsys.readouterr().out
    missing = load_recipe(TINY_VL, Recipe, [f'run.out_dir="{out}"', 'vl.data=["/no/such.jsonl"]'])
    from lmforge.lifecycle.check import RecipeError
    with pytest.raises(RecipeError, match=r"vl.data\[0\]"):
        run(missing, TINY_VL.parent)


def test_a_killed_vl_stage_resumes_and_matches(tmp_path):
    """SIGKILL during native multimodal pre-training, then the same command: the stage resumes from its
    last checkpoint (weights, optimizer, loader, V2PE draws) and ends where an uninterrupted run does."""
    sets = [*SMALL, "vl.pretrain_steps=12", "vl.sft_steps=1", "vl.mpo_steps=1"]
    straight = run(load_recipe(TINY_VL, Recipe, [f'run.out_dir="{tmp_path / "a"}"', *sets]), TINY_VL.parent)
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "lmforge.cli", "run", str(TINY_VL), "--set", f'run.out_dir="{out}"']
    cmd += [x for s in sets for x in ("--set", s)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = out / "vl_pretrain" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (ckpts.is_dir() and any(p.name.startswith("step_") and not p.name.endswith(".tmp")
                                      for p in ckpts.iterdir())):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no vl_pretrain checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "vl_pretrain" / "_stage.json").read_text())["status"] == "running"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((out / "report.json").read_text())
    assert again["timings"]["vl_pretrain"]["status"] == "resumed"
    for stage in ("vl_pretrain", "vl_sft"):
        assert again[stage]["final"]["loss"] == pytest.approx(straight[stage]["final"]["loss"], abs=1e-6)
        assert again[stage]["accuracy_after"] == straight[stage]["accuracy_after"]
