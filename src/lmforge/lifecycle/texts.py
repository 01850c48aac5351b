"""Plain-text sources for tokenizer training: the embedded corpora by name, and user files."""

from __future__ import annotations

from pathlib import Path

from lmforge import corpora
from lmforge.recipe import TokenizerSection

CORPUS_READERS = {"english": corpora.english_text, "chinese": corpora.chinese_news_text,
                  "pydoc": corpora.pydoc_text}


def corpus_texts(section: TokenizerSection) -> dict[str, str]:
    """The training text of each named embedded corpus, plus user files, `max_chars` each."""
    unknown = sorted(set(section.corpora) - set(CORPUS_READERS))
    if unknown:
        raise ValueError(f"tokenizer.corpora: unknown corpus {unknown}; choose from {sorted(CORPUS_READERS)}")
    texts = {name: CORPUS_READERS[name](max_chars=section.max_chars) for name in section.corpora}
    for f in section.files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer.files: {path} does not exist")
        texts[path.name] = path.read_text(encoding="utf-8", errors="replace")[: section.max_chars]
    return texts
