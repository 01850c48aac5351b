"""A whole training step of the tiny model under 2D sequence parallelism equals one process.

`lmforge train` under torchrun, a short stage data parallel then a long stage with head 2 x
context 2, logs the same losses, validation loss and bits per byte as one process and exports the
same weights; the long stage's checkpoint resumes in one process.

One spawn of 4 gloo processes runs every layout (tests/train/seqpar_train_worker.py): head 2 x
context 2 (both placements), context 4 as a double ring, head 4 (kv heads replicated), dp 2 x
context 2, and block checkpointing with and without Selective Checkpoint++. Loss, every gradient,
the gradient norm and the weights after an AdamW step match one process within 1e-5 (float32).
The rest are the recipe and process-count checks, without processes.
"""

import json

import pytest
from safetensors.torch import load_file

from lmforge.config import RecipeError, load_recipe
from lmforge.recipe import Recipe
from lmforge.train.parallel import DistInfo, ParallelDims, init_distributed
from lmforge.train.trainer import Trainer
from tests.train import seqpar_train_worker as worker
from tests.train.test_distributed import _run, _train_cmd


def test_four_processes_train_like_one(tmp_path):
    assert len(worker.spawn_report(worker.run, tmp_path, 4)) == len(worker.CASES)


def _validation(out, stage):
    rows = map(json.loads, (out / stage / "metrics.jsonl").read_text().splitlines())
    return [(r["val_loss"], r["val_bpb"]) for r in rows if "val_loss" in r]


def _stage_losses(out, stage):
    rows = map(json.loads, (out / stage / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _stages(sequence_parallel: str = "") -> str:
    """A short stage without, then a long stage with 2D sequence parallelism (`sequence_parallel`)."""
    return f'train.stages=[{{name="short"}}, {{name="long", seq_len=128{sequence_parallel}}}]'


def test_cli_long_stage_head_2_context_2_matches_one_process(dataset, tmp_path):
    root, _ = dataset
    recipe = tmp_path / "train.toml"
    recipe.write_text('[model]\npreset = "tiny"\n')
    extra = ["train.micro_batch=1", "train.val_every=2", "train.ckpt_every=2"]
    one, four = tmp_path / "one", tmp_path / "four"
    _run(_train_cmd(recipe, one, root, steps=3, extra=extra + [_stages()]))
    _run(_train_cmd(recipe, four, root, nproc=4, steps=3,
                    extra=extra + [_stages(", sequence_parallel={head=2, context=2}")]))
    for stage in ("short", "long"):
        a, b = _stage_losses(one, stage), _stage_losses(four, stage)
        assert sorted(a) == sorted(b) == [1, 2, 3] and max(abs(a[s] - b[s]) for s in a) <= 1e-5
        pairs = zip(_validation(one, stage), _validation(four, stage))
        assert max(abs(x - y) for p, q in pairs for x, y in zip(p, q)) <= 1e-5
    w1, w4 = (load_file(str(out / "long" / "hf" / "model.safetensors")) for out in (one, four))
    assert max((w1[k] - w4[k]).abs().max().item() for k in w1) <= 1e-5

    # The long stage's 4-process checkpoint of step 2 (FSDP2 over all 4) resumes in one process.
    ckpts = four / "long" / "checkpoints"
    (ckpts / "latest").write_text("step_00000002\n")
    (four / "long" / "DONE").unlink()
    proc = _run(_train_cmd(recipe, four, root, steps=3, extra=extra + [_stages()]) + ["--resume"])
    assert "written by 4 process(es)" in proc.stdout
    assert abs(_stage_losses(four, "long")[3] - _stage_losses(one, "long")[3]) <= 1e-5


def _recipe(tmp_path, table: str, seq_len: int = 32):
    path = tmp_path / "r.toml"
    path.write_text(f'[model]\npreset = "tiny"\n[train]\nseq_len = {seq_len}\nsequence_parallel = {table}\n')
    return load_recipe(path, Recipe)


def test_recipe_key(tmp_path):
    sp = _recipe(tmp_path, '{ head = 2, context = 2, placement = "context_first", double_ring_window = 1 }')
    assert (sp.train.sequence_parallel.size, sp.train.sequence_parallel.window) == (4, 1)
    assert _recipe(tmp_path, "{ context = 4 }").train.sequence_parallel.window is None


@pytest.mark.parametrize("table, seq_len, message", [
    ("{ head = 2, context = 2 }", 30, "train.seq_len = 30 with sequence_parallel = { head = 2, context = 2 }: "
                                      "sequence length 30 does not split"),
    ("{ context = 4, double_ring_window = 3 }", 32, "double_ring_window=3 does not divide context_size=4"),
    ('{ placement = "row_first" }', 32, "train.sequence_parallel.placement = 'row_first': expected one of"),
    ("{ head = 0 }", 32, "train.sequence_parallel.head = 0: expected an integer >= 1"),
    ("{ heads = 2 }", 32, "did you mean 'train.sequence_parallel.head'"),
])
def test_recipe_errors(tmp_path, table, seq_len, message):
    with pytest.raises(RecipeError, match=message.replace("{", r"\{").replace("(", r"\(")):
        _recipe(tmp_path, table, seq_len)


def test_world_must_factor(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "6")
    with pytest.raises(ValueError, match=r"world size 6 does not factor into dp x head x context with head=4, "
                                         r"context=1"):
        init_distributed(device="cpu", head=4)


def test_trainer_checks_the_arrangement():
    with pytest.raises(ValueError, match="sequence_parallel = { head = 2, context = 2 }, but the processes were "
                                         "arranged as head = 1, context = 1"):
        Trainer(worker.fresh_model(), worker.train_section(2, 2), DistInfo(dims=ParallelDims()))


def test_the_7b_long_stage_needs_a_multiple_of_8_processes():
    from pathlib import Path

    from lmforge.lifecycle.check import check_train

    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "internlm2-7b.toml", Recipe)
    assert recipe.train.stages[1].sequence_parallel.size == 8
    check_train(recipe, 16)
    with pytest.raises(RecipeError, match=r"train.sequence_parallel \(stage '32k'\): world size 4 does not factor"):
        check_train(recipe, 4)
