"""Bytes per token id: the denominator of validation bits per byte (`Tokenizer.token_byte_lengths`)."""

from lmforge.corpora import chinese_news_text, english_text
from lmforge.tokenizer import train_bpe


def test_token_byte_lengths_sum_to_the_text_bytes():
    """Bits per byte from token losses divides by these: they must add up to the UTF-8 length."""
    tok = train_bpe([english_text(100_000), chinese_news_text(max_chars=50_000)], vocab_size=800)
    lengths = tok.token_byte_lengths()
    text = english_text(120_000)[-3_000:] + " 中文的句子，还有標點。 ✓ é"
    assert sum(lengths[i] for i in tok.encode(text)) == len(text.encode("utf-8"))
    assert all(lengths[tok.token_to_id(t)] == 0 for t in tok.special_tokens)


def test_token_bytes_are_the_text_of_each_id():
    """What constrained decoding matches against a grammar: the ids' bytes join into the text, and
    the byte-level alphabet is the one `tokenizers` uses."""
    from tokenizers.pre_tokenizers import ByteLevel

    from lmforge.tokenizer.tokenizer import _byte_level_decoding

    assert sorted(_byte_level_decoding()) == sorted(ByteLevel.alphabet())
    tok = train_bpe([english_text(100_000), chinese_news_text(max_chars=50_000)], vocab_size=800)
    token_bytes = tok.token_bytes()
    text = english_text(120_000)[-3_000:] + " 中文的句子，还有標點。 ✓ é\n\t\x01"
    assert b"".join(token_bytes[i] for i in tok.encode(text)) == text.encode("utf-8")
    assert all(token_bytes[tok.token_to_id(t)] == b"" for t in tok.special_tokens)

