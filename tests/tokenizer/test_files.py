"""Saving and loading tokenizer directories; transformers reads them; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.tokenizer import INTERNLM2_CHAT_TEMPLATE, Tokenizer

TEXTS = [
    "To be, or not to be, that is the question:",
    "中共中央总书记、国家主席江泽民发表１９９８年新年讲话。",
    "  mixed 中文 and English, 2024-03-26, emoji 🤖 \n\t end ",
    "<s><|im_start|>user\nhi<|im_end|>\n",
    "",
]


def test_saved_files(saved_dir: Path) -> None:
    names = {p.name for p in saved_dir.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= names
    config = json.loads((saved_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["unk_token"], config["pad_token"]) \
        == ("<s>", "</s>", "<unk>", "</s>")
    assert config["chat_template"] == INTERNLM2_CHAT_TEMPLATE
    assert config["model_max_length"] == 32768
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    special_map = json.loads((saved_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert "<|im_end|>" in special_map["additional_special_tokens"]


def test_save_load_round_trip(tok: Tokenizer, saved_dir: Path) -> None:
    for source in (saved_dir, saved_dir / "tokenizer.json", str(saved_dir)):
        loaded = Tokenizer.load(source)
        assert loaded.vocab_size == tok.vocab_size
        assert (loaded.bos_id, loaded.eos_id, loaded.unk_id, loaded.pad_id) == (1, 2, 0, 2)
        assert loaded.chat_template == tok.chat_template
        assert loaded.stop_ids == tok.stop_ids
        for text in TEXTS:
            assert loaded.encode(text) == tok.encode(text)
            assert loaded.decode(tok.encode(text)) == text


def test_loading_reads_the_config(saved_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((saved_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": {"content": "<|im_end|>", "special": True},
        "chat_template": "{{ messages[0]['content'] }}",
        "model_max_length": 4096,
    }), encoding="utf-8")
    loaded = Tokenizer.load(tmp_path)
    assert loaded.eos_token == "<|im_end|>" and loaded.eos_id == 7
    assert loaded.model_max_length == 4096
    assert loaded.chat_template == "{{ messages[0]['content'] }}"


def test_transformers_matches_our_ids(tok: Tokenizer, saved_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(saved_dir))
    assert hf.is_fast
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id, hf.pad_token_id) == (1, 2, 0, 2)
    for text in TEXTS:
        # InternLM2 ships add_bos_token=True: transformers' default equals add_bos=True here.
        assert hf(text)["input_ids"] == tok.encode(text, add_bos=True)
        assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
        assert hf.decode(tok.encode(text)) == text


def test_missing_tokenizer_names_the_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        Tokenizer.load(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "tokenizer.model" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope")


def test_corrupt_files_are_value_errors_naming_the_file(saved_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer.load(tmp_path)

    bad.write_bytes((saved_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        Tokenizer.load(tmp_path)


def test_a_model_directory_ends_a_chat_turn_at_im_end_for_transformers(tok: Tokenizer, saved_dir: Path,
                                                                      tmp_path: Path) -> None:
    """InternLM2's chat checkpoints list <|im_end|> beside </s> in generation_config.json; ours too,
    so transformers' generate (TRL, vLLM) stops a turn where lmforge's engine does."""
    transformers = pytest.importorskip("transformers")
    from lmforge.tokenizer.hf_files import copy_tokenizer_files

    im_end = tok.token_to_id("<|im_end|>")
    assert im_end is not None and im_end != tok.eos_id
    for i, write in enumerate((lambda d: tok.save(d), lambda d: copy_tokenizer_files(saved_dir, d))):
        model_dir = tmp_path / f"model{i}"
        model_dir.mkdir()
        (model_dir / "generation_config.json").write_text(json.dumps({"bos_token_id": tok.bos_id,
                                                                      "eos_token_id": tok.eos_id}))
        write(model_dir)
        write(model_dir)  # twice: listed once
        gen = transformers.GenerationConfig.from_pretrained(model_dir)
        assert gen.eos_token_id == [tok.eos_id, im_end] and gen.bos_token_id == tok.bos_id
    plain = tmp_path / "tokenizer_only"
    tok.save(plain)  # no generation_config.json: nothing is created
    assert not (plain / "generation_config.json").exists()
