"""C4's line and document rules (Raffel et al. 2020).

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.

Lines without terminal punctuation, with fewer than 3 words, mentioning javascript or a
cookie/terms/privacy policy are removed (the document text is rewritten); documents with
"lorem ipsum" or a curly bracket are dropped, and so are those left with fewer than 5 sentences.
For Chinese the same rules count characters: a line needs `min_chars_per_line_zh` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter
from lmforge.data.text import TERMINAL_PUNCTUATION, sentences, split_words

POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")


def c4_clean(text: str, chinese: bool = False, min_words_per_line: int = 3, min_chars_per_line_zh: int = 5,
             max_word_length: int = 1000, min_sentences: int = 5,
             keep_lines_without_punctuation: bool = False) -> tuple[str | None, str]:
    """(cleaned text, "") or (None, reason the document is dropped)."""
    kept = []
    for raw in text.splitlines():
        line = CITATION_RE.sub("", raw.strip()).strip()
        if not line:
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            return None, "c4_lorem_ipsum"
        if "{" in line:
            return None, "c4_curly_bracket"
        if "javascript" in lower or any(p in lower for p in POLICY_SUBSTRINGS):
            continue
        if not keep_lines_without_punctuation and not line.endswith(TERMINAL_PUNCTUATION):
            continue
        if chinese:
            if len(line) < min_chars_per_line_zh:
                continue
        else:
            words = split_words(line)
            if len(words) < min_words_per_line or max(map(len, words)) > max_word_length:
                continue
        kept.append(line)
    cleaned = "\n".join(kept)
    if len(sentences(cleaned)) < min_sentences:
        return None, "c4_too_few_sentences"
    return cleaned, ""


@dataclass
class C4Rules(Filter):
    """C4's rules; rewrites the text without the removed lines."""

    name: ClassVar[str] = "c4"
    min_words_per_line: int = 3
    min_chars_per_line_zh: int = 5
    max_word_length: int = 1000
    min_sentences: int = 5
    min_sentences_zh: int = 3
    keep_lines_without_punctuation: bool = False
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        zh = doc.language == "zh"
        cleaned, reason = c4_clean(doc.text, zh, self.min_words_per_line, self.min_chars_per_line_zh,
                                   self.max_word_length, self.min_sentences_zh if zh else self.min_sentences,
                                   self.keep_lines_without_punctuation)
        if cleaned is None:
            return False, reason
        if cleaned != doc.text:
            self.stats.extra["c4_lines_removed_chars"] += len(doc.text) - len(cleaned)
            doc.text = cleaned
        return True
