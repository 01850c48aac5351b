"""The recipe is checked before the first stage (lmforge.lifecycle.check), the data stage's key
covers the files a `data.input` glob matches, and `run.device` reaches every stage.

The CLI's one-line messages for each bad value are in tests/test_cli_errors.py; here, the rules
behind them.
"""

from pathlib import Path

import pytest
import torch

from lmforge.config import RecipeError, check_fields, in_range, load_recipe
from lmforge.lifecycle.check import check_run_recipe, check_train, check_train_recipe
from lmforge.lifecycle.corpus import input_config
from lmforge.lifecycle.stage import run_stage_key
from lmforge.recipe import DataSection, Recipe
from lmforge.train.config import TrainSection, TrainStageSection, check_batches
from lmforge.train.parallel import init_distributed, process_device

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "recipes" / "micro.toml"


def micro(*overrides: str) -> Recipe:
    return load_recipe(MICRO, Recipe, list(overrides))


@pytest.mark.parametrize(("value", "spec", "inside"), [
    (1, ">= 1", True), (0, ">= 1", False), (0.0, "> 0", False), (1e-9, "> 0", True),
    (0, "[0, 1)", True), (1, "[0, 1)", False), (1, "(0, 1]", True), (0, "(0, 1]", False), (0.5, "[0, 1]", True)])
def test_in_range(value, spec, inside):
    assert in_range(value, spec) is inside


def test_check_fields_names_the_field_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"^micro_batch = 0: expected an integer >= 1$"):
        TrainSection(micro_batch=0)
    with pytest.raises(ValueError, match=r"^val_share = 1.0: expected a number in \[0, 1\)$"):
        DataSection(val_share=1.0)
    with pytest.raises(ValueError, match=r"^optimizer = 'sgd': expected one of 'adamw', 'adalomo', 'muon'$"):
        TrainSection(optimizer="sgd")
    with pytest.raises(RecipeError, match=r"micro.toml \(with --set overrides\): eval.niah_lengths = \[64, 0\]: "):
        micro("eval.niah_lengths=[64, 0]")  # a list is checked item by item
    check_fields(TrainStageSection(), {"lr": "> 0"})  # unset (None) passes


def test_batches_split_over_the_data_parallel_processes():
    stages = [TrainStageSection(name="a"), TrainStageSection(name="b", global_batch=6, micro_batch=3)]
    train = TrainSection(global_batch=16, micro_batch=4, stages=stages)
    check_batches(train, 1)
    with pytest.raises(ValueError, match=r"global_batch = 16: .* = 4 x 8"):
        check_batches(TrainSection(global_batch=16, micro_batch=4), 8)
    with pytest.raises(ValueError, match=r"global_batch = 6 \(stage 'b'\): must be a multiple .* = 3 x 4"):
        check_batches(train, 4)
    with pytest.raises(ValueError, match="two stages are named 'a'"):
        TrainSection(stages=[TrainStageSection(name="a"), TrainStageSection(name="a")])


def test_world_size_enters_the_check(monkeypatch):
    recipe = micro()
    check_run_recipe(recipe, MICRO.parent)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(RecipeError, match=r"train.global_batch = 8 \(stage 'short'\): .* = 8 x 3"):
        check_run_recipe(recipe, MICRO.parent)
    with pytest.raises(RecipeError, match="adalomo"):
        check_train(micro("train.optimizer='adalomo'", "train.global_batch=24", "train.stages=[]"), 3)


def test_lookups_are_checked_before_any_stage(tmp_path):
    out = f"run.out_dir='{tmp_path / 'run'}'"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "x", "input": "y"}\n')  # no answers
    for override, message in [("model.preset='internlm3'", "model.preset = 'internlm3': expected one of"),
                              ("eval.tasks=['arc_easy', 'mmlu:astrology']", "eval.tasks: mmlu: unknown subject"),
                              ("run.device='gpu0'", "run.device = 'gpu0': expected 'auto', 'cpu', 'cuda'"),
                              ("tokenizer.vocab_size=100", "tokenizer.vocab_size = 100: expected an integer >= "),
                              ("data.pipeline='missing.toml'", "data.pipeline = 'missing.toml'"),
                              ("sft.enabled=false", "rm.enabled = true needs sft.enabled = true"),
                              ("sft.data='chats.jsonl'", "sft.data = 'chats.jsonl': no such file"),
                              ("rm.global_batch=6", "rm.global_batch = 6: must be a multiple of micro_batch"),
                              ("eval.niah_variants=['multi']", "eval.niah_variants: 'multi': expected one of"),
                              ("eval.long_metric='bleu'", "eval.long_metric: 'bleu': expected one of"),
                              ("eval.long_tasks=['qa.jsonl']", "eval.long_tasks[0] = 'qa.jsonl': no such file"),
                              (f"eval.long_tasks=['{bad}']", f"eval.long_tasks[0]: {bad}: no usable record")]:
        with pytest.raises((RecipeError, FileNotFoundError), match=message.replace("(", r"\(").replace("[", r"\[")):
            check_run_recipe(micro(out, override), MICRO.parent)
    assert not (tmp_path / "run").exists()


def test_train_recipe_needs_its_shards(tmp_path):
    with pytest.raises(RecipeError, match="train.shards is empty"):
        check_train_recipe(micro())
    (tmp_path / "shards").mkdir()
    with pytest.raises(RecipeError, match="no complete shards"):
        check_train_recipe(micro(f"train.shards='{tmp_path / 'shards'}'", "train.stages=[]"))


def test_data_key_covers_the_files_a_glob_matches(tmp_path):
    """A file added under the same pattern, or an edited one, changes the data stage's key."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "one"}\n')
    section = DataSection(input=str(tmp_path / "in" / "*.jsonl"), input_format="jsonl")

    def key() -> str:
        return run_stage_key("data", {"pipeline": "same", **input_config(section)}, [])

    first = key()
    assert key() == first
    (tmp_path / "in" / "b.jsonl").write_text('{"text": "two"}\n')
    second = key()
    assert second != first
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "one, edited"}\n')
    assert key() != second
    (tmp_path / "in" / "notes.txt").write_text("not matched by the glob")
    assert len(input_config(section)["files"]) == 2


def test_device_is_honoured():
    assert process_device("cpu") == torch.device("cpu")
    assert process_device("cuda", local_rank=3) == torch.device("cuda", 3)  # torchrun's GPU for this process
    assert process_device("cuda:1", local_rank=3) == torch.device("cuda", 1)
    assert init_distributed(device="cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'gpu0': expected"):
        process_device("gpu0")


def test_smeared_keys_are_refused_with_sequence_parallelism():
    split = "train.sequence_parallel={ head = 1, context = 2 }"
    check_train(micro(split, "train.stages=[]"), 2)
    with pytest.raises(RecipeError, match=r"model.smear_keys = true with train.sequence_parallel"):
        check_train(micro("model.smear_keys=true", split, "train.stages=[]"), 2)


def test_a_head_learning_rate_of_its_own_is_refused_for_tied_embeddings():
    check_train(micro("train.head_lr_scale=3.0", "train.stages=[]"), 1)
    check_train(micro("model.tie_embeddings=true", "train.head_lr_scale=3.0", "train.embed_lr_scale=3.0",
                      "train.stages=[]"), 1)
    with pytest.raises(RecipeError, match=r"train.head_lr_scale = 3.0 differs from train.embed_lr_scale = 1.0"):
        check_train(micro("model.tie_embeddings=true", "train.head_lr_scale=3.0", "train.stages=[]"), 1)
