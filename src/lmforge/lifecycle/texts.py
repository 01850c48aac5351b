"""Plain-text sources for tokenizer training: the embedded corpora by name, and user files."""

from __future__ import annotations

from pathlib import Path

from lmforge import corpora
from lmforge.recipe import TokenizerSection

CORPUS_READERS = {"english": corpora.english_text, "chinese": corpora.chinese_news_text,
                  "pydoc": corpora.pydoc_text}


def check_sources(section: TokenizerSection) -> None:
    """Known corpus names and existing files, before anything is read."""
    unknown = sorted(set(section.corpora) - set(CORPUS_READERS))
    if unknown:
        raise ValueError(f"tokenizer.corpora: unknown corpus {unknown}; choose from {sorted(CORPUS_READERS)}")
    for f in section.files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"tokenizer.files: {f} does not exist")


def corpus_texts(section: TokenizerSection) -> dict[str, str]:
    """The training text of each named embedded corpus, plus user files, `max_chars` each."""
    check_sources(section)
    texts = {name: CORPUS_READERS[name](max_chars=section.max_chars) for name in section.corpora}
    for f in section.files:
        texts[Path(f).name] = Path(f).read_text(encoding="utf-8", errors="replace")[: section.max_chars]
    return texts
