"""InternLM2 special tokens: fixed ids, matched in text, never split, stop ids."""

from __future__ import annotations

import pytest

from lmforge.tokenizer import CHAT_TOKENS, SPECIAL_TOKENS, Tokenizer


def test_internlm2_order() -> None:
    assert SPECIAL_TOKENS == (
        "<unk>", "<s>", "</s>", "<|plugin|>", "<|interpreter|>", "<|action_end|>",
        "<|action_start|>", "<|im_end|>", "<|im_start|>",
    )
    assert SPECIAL_TOKENS[3:] == CHAT_TOKENS


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_each_special_token_is_one_id_in_any_context(tok: Tokenizer, token: str) -> None:
    expected = SPECIAL_TOKENS.index(token)
    assert tok.encode(token) == [expected]
    for left, right in (("word", "word"), ("中文", "中文"), (" ", "\n"), ("1", "2")):
        ids = tok.encode(left + token + right)
        assert ids.count(expected) == 1
        assert ids == tok.encode(left) + [expected] + tok.encode(right)


def test_near_misses_are_ordinary_text(tok: Tokenizer) -> None:
    for text in ("<|im_start", "<|IM_END|>", "< s>", "<|im_end|"):
        assert not set(tok.encode(text)) & set(range(len(SPECIAL_TOKENS)))


def test_skip_special_tokens(tok: Tokenizer) -> None:
    ids = tok.encode("<s><|im_start|>user\nhi<|im_end|>\n")
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi\n"
    assert tok.decode(ids) == "<s><|im_start|>user\nhi<|im_end|>\n"


def test_stop_ids_and_lookup(tok: Tokenizer) -> None:
    assert tok.stop_ids == [tok.eos_id, tok.token_to_id("<|im_end|>")] == [2, 7]
    assert tok.id_to_token(8) == "<|im_start|>"
    assert tok.token_to_id("definitely not a token") is None
