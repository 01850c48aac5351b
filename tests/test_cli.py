"""The CLI: the README's commands work, errors are clear, planned stages say so."""

import json
import subprocess
import sys

import pytest

from lmforge.cli import main
from lmforge.model import save_model
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    assert main(["tokenizer", "train", "--out", str(out), "--vocab-size", "400", "--corpora", "english",
                 "chinese", "--max-chars", "60000"]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer_dir):
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer_dir)
    model = tiny_model(vocab_size=tok.vocab_size)
    out = tmp_path_factory.mktemp("ckpt")
    save_model(model, out)
    tok.save(out)
    return out


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "lmforge.cli", "--help"], capture_output=True, text=True).stdout
    for cmd in ("data", "tokenizer", "train", "sft", "rm", "rl", "eval", "serve", "chat", "run", "convert"):
        assert cmd in out


def test_convert_both_ways_and_generate(checkpoint, tmp_path, capsys):
    assert main(["convert", str(checkpoint), str(tmp_path / "llama"), "--to", "llama"]) == 0
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (tmp_path / "llama" / "tokenizer.json").is_file()
    assert main(["convert", str(tmp_path / "llama"), str(tmp_path / "back"), "--to", "internlm2",
                 "--dtype", "bfloat16"]) == 0
    assert main(["generate", str(tmp_path / "back"), "To be", "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.strip()


def test_chat_turns(checkpoint, capsys):
    assert main(["chat", str(checkpoint), "--system", "Be brief.", "--message", "hello", "--message", "again",
                 "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.count("assistant> ") == 2


def test_tokenizer_encode(tokenizer_dir, capsys):
    assert main(["tokenizer", "encode", str(tokenizer_dir), "2024年"]) == 0
    assert "2 | 0 | 2 | 4" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["convert", str(tmp_path), str(tmp_path / "out"), "--to", "llama"]) == 1
    assert "config.json" in capsys.readouterr().err
    assert main(["run", "recipes/tiny.toml", "--set", "model.dimm=4"]) == 1
    assert "did you mean 'model.dim'" in capsys.readouterr().err


def test_alignment_commands_need_a_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["sft"])
    assert "required" in capsys.readouterr().err


def test_run_help_names_the_stages(capsys):
    """`lmforge run` itself is exercised end to end in tests/test_run.py (micro recipe)."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "crawl -> data -> tokenizer -> shards -> pretrain -> eval -> sample -> sft -> rm -> polar -> rl -> mimg -> vl_pretrain -> vl_sft -> vl_mpo -> report" in " ".join(out.split())
    with pytest.raises(SystemExit):
        main(["run", "recipes/micro.toml", "--from", "training"])
    assert "invalid choice" in capsys.readouterr().err
