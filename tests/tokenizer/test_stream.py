"""StreamDecoder: streamed pieces concatenate to decode(all ids), never showing half characters."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.tokenizer import StreamDecoder, Tokenizer

# The session tokenizer is read-only, so sharing it across examples is safe.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]

TEXT = "你好，世界！😀👨‍👩‍👧 InternLM2 流式输出 ok 🇨🇳\n中文 mixed with English，数字 2024。"


def stream(tok: Tokenizer, ids: list[int], **kw) -> list[str]:
    decoder = StreamDecoder(tok, **kw)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_chinese_and_emoji(tok: Tokenizer) -> None:
    ids = tok.encode(TEXT)
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids) == TEXT
    # Multi-byte characters span several byte-level tokens here, so some pushes must wait...
    assert "" in pieces[:-1]
    # ...and nothing streamed is ever a broken character.
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[-1] == ""  # nothing was left to flush


def test_pushes_alone_match_when_the_text_is_complete(tok: Tokenizer) -> None:
    ids = tok.encode(TEXT)
    decoder = StreamDecoder(tok)
    assert "".join(decoder.push(i) for i in ids) == TEXT


def test_incomplete_tail_is_held_until_flush(tok: Tokenizer) -> None:
    ids = tok.encode("ab😀")
    decoder = StreamDecoder(tok)
    out = "".join(decoder.push(i) for i in ids[:-1])
    assert out == "ab"  # the emoji's bytes are not all there yet
    assert decoder.flush() == tok.decode(ids[:-1])[len("ab"):]


def test_skip_special_tokens(tok: Tokenizer) -> None:
    ids = tok.encode("<|im_start|>assistant\n你好<|im_end|>")
    pieces = stream(tok, ids, skip_special_tokens=True)
    assert "".join(pieces) == "assistant\n你好"


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_any_id_sequence(tok: Tokenizer, data: st.DataObject) -> None:
    # Arbitrary ids, including byte tokens that never form valid UTF-8.
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=30))
    assert "".join(stream(tok, ids)) == tok.decode(ids)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE_OK)
@given(text=st.text())
def test_any_text(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert "".join(stream(tok, ids)) == text
