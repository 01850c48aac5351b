"""Session fixtures: one small bilingual BPE tokenizer, trained once, saved once."""

from __future__ import annotations

import pytest

from lmforge import corpora
from lmforge.tokenizer import Tokenizer, train_bpe

VOCAB_SIZE = 1000


@pytest.fixture(scope="session")
def bilingual_text() -> str:
    """About 200 KB of training text: half Shakespeare, half People's Daily."""
    return corpora.english_text(70_000) + "\n" + corpora.chinese_news_text(45_000)


@pytest.fixture(scope="session")
def tok(bilingual_text: str) -> Tokenizer:
    return train_bpe([bilingual_text], vocab_size=VOCAB_SIZE)


@pytest.fixture(scope="session")
def saved_dir(tok: Tokenizer, tmp_path_factory: pytest.TempPathFactory):
    return tok.save(tmp_path_factory.mktemp("tokenizer"))
