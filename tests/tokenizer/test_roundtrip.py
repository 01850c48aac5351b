"""encode/decode is the identity on any Unicode text (byte-level BPE, no normalizer)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer

# The session tokenizer is read-only, so sharing it across examples is safe.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]

EDGE_CASES = [
    "",
    " ",
    "   leading and trailing   ",
    "tabs\tand\r\nCRLF\n\n\nnewlines",
    "\x00NUL\x00",
    "\u0301 lone combining mark, e\u0301 and é",
    "emoji 😀👍🏽👨‍👩‍👧 flags 🇨🇳🇬🇧",
    "中文、日本語のかな、한국어",
    "\ufeffBOM and \u200bzero width and \u2028line separator",
    "\U0010ffff last code point, \ufffd replacement char",
    "▁ literal SentencePiece space",
    "12,345.67 ٣٤٥ ①②",
]

# Any text: all categories hypothesis generates (surrogates excluded, as Python cannot encode
# them to UTF-8), plus special tokens spliced in so they are exercised mid-text too.
any_text = st.text()
text_with_specials = st.lists(
    st.one_of(st.text(max_size=20), st.sampled_from(SPECIAL_TOKENS)), max_size=6
).map("".join)


def test_edge_cases_round_trip(tok: Tokenizer) -> None:
    for text in EDGE_CASES:
        assert tok.decode(tok.encode(text)) == text, repr(text)


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(text=any_text)
def test_any_unicode_round_trips(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(text=text_with_specials)
def test_text_with_special_tokens_round_trips(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text, add_bos=True)) == "<s>" + text


@settings(max_examples=50, deadline=None, suppress_health_check=FIXTURE_OK)
@given(texts=st.lists(any_text, max_size=5))
def test_encode_batch_equals_encode(tok: Tokenizer, texts: list[str]) -> None:
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, add_bos=True) == [tok.encode(t, add_bos=True) for t in texts]


def test_add_bos(tok: Tokenizer) -> None:
    assert tok.encode("hi", add_bos=True) == [tok.bos_id, *tok.encode("hi")]
    assert tok.encode("", add_bos=True) == [tok.bos_id]


def test_bad_ids_and_inputs_are_rejected(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match=str(tok.vocab_size)):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(TypeError):
        tok.encode(b"bytes")  # type: ignore[arg-type]
