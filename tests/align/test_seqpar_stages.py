"""The alignment stages' `sequence_parallel` setting.

`lmforge sft`, `lmforge rm` and `lmforge dpo` over 2 gloo processes at head 1 x context 2 (each
row split over both, tests/align/seqpar_stage_worker.py) log the losses of one process, step by step, within 1e-5
(the second step's loss follows the first update, so it checks the gradients too). Bad settings are
refused with [train]'s messages: a sequence length that does not split, a world size that does not
factor, a batch that does not divide over the data-parallel processes left; rl refuses it, dpo
takes it (its sums over each answer are exact under it: tests/train/test_seqpar_dpo_loss.py).
"""

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lmforge.config import RecipeError, load_recipe
from lmforge.lifecycle.check import check_align
from lmforge.recipe import Recipe
from tests.align import seqpar_stage_worker as worker

MICRO = Path(__file__).resolve().parents[2] / "recipes" / "micro.toml"
TOLERANCE = 1e-5


def _losses(metrics: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r}


def test_sft_rm_and_dpo_under_sequence_parallelism_match_one_process(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        worker.run_stages(tmp_path / "one", str(tiny_dir))
    finally:
        torch.set_num_threads(threads)
    mp.spawn(worker.run, args=(2, str(tmp_path / "store"), str(tmp_path / "two"), str(tiny_dir), 1, 2), nprocs=2,
             join=True)
    for metrics in ("sft/metrics.jsonl", "rm/member-0/metrics.jsonl", "dpo/metrics.jsonl"):
        one, two = _losses(tmp_path / "one" / metrics), _losses(tmp_path / "two" / metrics)
        assert sorted(one) == sorted(two) == [1, 2]
        diff = max(abs(one[s] - two[s]) for s in one)
        print(f"{metrics}: one process {one}, head 1 x context 2 {two}, largest difference {diff:.2e}")
        assert diff <= TOLERANCE, (metrics, one, two)
    config = json.loads((tmp_path / "two" / "rm" / "rm.json").read_text())["config"]
    assert config["sequence_parallel"]["context"] == 2


def _recipe(*sets: str) -> Recipe:
    return load_recipe(MICRO, Recipe, list(sets))


def test_sequence_length_that_does_not_split_is_refused():
    with pytest.raises(RecipeError, match=r"sft\.seq_len = 126 with sequence_parallel = \{ head = 1, context = 4 \}"
                                          r".*multiple of 8.*use seq_len=120 or 128"):
        _recipe("sft.seq_len=126", "sft.sequence_parallel.context=4")


def test_world_that_does_not_factor_and_batch_over_data_parallel_processes():
    recipe = _recipe("rm.sequence_parallel.context=2")
    with pytest.raises(RecipeError, match=r"rm\.sequence_parallel: world size 3 does not factor into dp x head x "
                                          r"context with head=1, context=2"):
        check_align(recipe, 3, ("rm",))
    check_align(recipe, 2, ("rm",))  # dp 1: 4 pairs of micro-batches of 4
    with pytest.raises(RecipeError, match=r"rm\.global_batch = 4: .* data-parallel processes = 4 x 2"):
        check_align(recipe, 4, ("rm",))


def test_setup_arranges_the_processes_from_the_section(tmp_path, monkeypatch):
    from lmforge.align.loop import setup

    recipe = _recipe("sft.sequence_parallel.context=2", "sft.init_from='x'")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="world size 3 does not factor into dp x head x context"):
        setup("sft", recipe.sft, tmp_path, "cpu", None)


def test_rl_whose_loss_is_not_split_refuses_it():
    with pytest.raises(RecipeError, match=r"rl\.sequence_parallel = \{ head = 1, context = 2 \}: online RL"
                                          r".*set head = 1 and context = 1"):
        _recipe("rl.sequence_parallel.context=2")


@pytest.mark.parametrize("loss", ["dpo", "simpo"])
def test_dpo_takes_sequence_parallelism_and_checks_the_split(loss):
    sp = _recipe(f"dpo.loss='{loss}'", "dpo.sequence_parallel.head=2", "dpo.sequence_parallel.context=2").dpo
    assert (sp.sequence_parallel.head, sp.sequence_parallel.context) == (2, 2)
    with pytest.raises(RecipeError, match=r"dpo\.seq_len = 126 with sequence_parallel = \{ head = 2, context = 2 \}"
                                          r".*multiple of 4.*use seq_len=124 or 128"):
        _recipe(f"dpo.loss='{loss}'", "dpo.seq_len=126", "dpo.sequence_parallel.head=2",
                "dpo.sequence_parallel.context=2")
