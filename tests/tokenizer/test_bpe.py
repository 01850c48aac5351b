"""Training the byte-level BPE: vocabulary layout, digit splitting, CJK isolation, inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tokenizers.pre_tokenizers import ByteLevel

from lmforge import corpora
from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer, bytes_per_token, train_bpe
from lmforge.tokenizer.pretokenize import byte_level_pre_tokenizer

from .conftest import VOCAB_SIZE

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
def _byte_map() -> dict[str, int]:
    """ByteLevel's printable stand-in character for each byte, reversed (char -> byte).

    The GPT-2 table, rebuilt here so the tests do not lean on tokenizers' internals.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


TOKEN_BYTES = _byte_map()


def token_bytes(token: str) -> bytes:
    return bytes(TOKEN_BYTES[c] for c in token)


def test_vocab_size_and_special_ids(tok: Tokenizer) -> None:
    assert tok.vocab_size == VOCAB_SIZE
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.pad_id == tok.eos_id  # no pad token: eos stands in
    assert tok.special_tokens == list(SPECIAL_TOKENS)


def test_byte_map_matches_tokenizers() -> None:
    assert set(TOKEN_BYTES) == set(ByteLevel.alphabet())


def test_digits_are_split_individually(tok: Tokenizer) -> None:
    assert len(tok.encode("12345")) == 5
    assert [tok.decode([i]) for i in tok.encode("12345")] == list("12345")
    # Frequent numbers in the corpus (years, dates) still never become one token.
    assert len(tok.encode("1998")) == 4
    for i in range(len(SPECIAL_TOKENS), tok.vocab_size):
        text = token_bytes(tok.id_to_token(i)).decode("utf-8", errors="ignore")
        assert sum(c.isdigit() for c in text) <= 1, text


def test_vocabulary_never_mixes_cjk_with_other_characters(tok: Tokenizer) -> None:
    for i in range(len(SPECIAL_TOKENS), tok.vocab_size):
        # Partial UTF-8 sequences at a token's edges are dropped; what is left is whole chars.
        text = token_bytes(tok.id_to_token(i)).decode("utf-8", errors="ignore")
        has_cjk = any(CJK.match(c) for c in text)
        assert not (has_cjk and any(not CJK.match(c) for c in text)), (i, text)


def test_chinese_runs_are_isolated_in_encoding(tok: Tokenizer) -> None:
    text = "InternLM2是一个大语言模型，支持200k上下文。Hello世界 ok"
    encoding = tok.backend.encode(text, add_special_tokens=False)
    for start, end in encoding.offsets:
        piece = text[start:end]
        kinds = {bool(CJK.match(c)) for c in piece}
        assert len(kinds) <= 1, piece
    assert tok.decode(tok.encode(text)) == text


def test_pre_tokenizer_splits() -> None:
    pieces = [p for p, _ in byte_level_pre_tokenizer().pre_tokenize_str("ab中文cd12")]
    decoded = [token_bytes(p).decode() for p in pieces]
    assert decoded == ["ab", "中文", "cd", "1", "2"]


def test_chinese_compresses_with_a_bilingual_vocabulary(tok: Tokenizer) -> None:
    # A 1000-entry vocabulary is tiny (measured: ~1.8 bytes/token on English, ~2.2 on Chinese),
    # but on held-out text of both languages it must clearly beat one token per byte.
    english = corpora.english_text(500_000)[-20_000:]
    chinese = corpora.chinese_news_text(200_000)[-20_000:]
    assert bytes_per_token(tok, english) > 1.5
    assert bytes_per_token(tok, chinese) > 1.8


def test_bytes_per_token_is_bytes_over_tokens(tok: Tokenizer) -> None:
    text = "héllo 世界"
    assert bytes_per_token(tok, text) == len(text.encode()) / len(tok.encode(text))
    with pytest.raises(ValueError):
        bytes_per_token(tok, "")


def test_train_from_files_and_generator(tmp_path: Path) -> None:
    en, zh = tmp_path / "en.txt", tmp_path / "zh.txt"
    en.write_text(corpora.english_text(30_000), encoding="utf-8")
    zh.write_text(corpora.chinese_news_text(15_000), encoding="utf-8")
    from_files = train_bpe([en, zh], vocab_size=400)
    from_gen = train_bpe((p.read_text(encoding="utf-8") for p in (en, zh)), vocab_size=400)
    for t in (from_files, from_gen):
        assert t.vocab_size == 400
        assert t.token_to_id("<|im_start|>") == 8
        assert t.decode(t.encode("To be, or not 中文 42")) == "To be, or not 中文 42"


def test_min_frequency_limits_the_vocabulary() -> None:
    t = train_bpe(["abc abd"], vocab_size=2000, min_frequency=2)
    assert t.vocab_size < 2000


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        train_bpe(["text"], vocab_size=100)
    with pytest.raises(TypeError, match="mix"):
        train_bpe([tmp_path, "text"], vocab_size=300)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_bpe([tmp_path / "missing.txt"], vocab_size=300)
    with pytest.raises(TypeError, match="list"):
        train_bpe("a single string", vocab_size=300)  # type: ignore[arg-type]
    path = tmp_path / "a.txt"
    path.write_text("some text", encoding="utf-8")
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_bpe([str(path)], vocab_size=300)
    with pytest.raises(TypeError, match="item 1"):
        train_bpe(iter(["ok", b"bytes"]), vocab_size=300)  # type: ignore[list-item]
