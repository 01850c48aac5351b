"""The safe stage: word blocklist, toxicity, pornography.

Paper: WanJuan-CC, arXiv 2402.19282, stage 4; docs/papers.md §4.

WanJuan-CC blocks ~13M domains and 36,289 words, then scores every document with a toxicity and a
pornography classifier (`toxic_score`, `porn_score`). The domain blocklist is the `url_filter` step
(url_filter.py), run before extraction as FineWeb runs it: a blocked page needs no parsing. Words
come from glin-profanity's English and Chinese lists (read by path; MIT) plus user files, matched
in one Aho-Corasick pass (pyahocorasick): Latin words must stand on word boundaries, Chinese words
match anywhere.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.score_filter import ScoreFilter
from lmforge.data.step import Filter

GLIN_LISTS = {"en": "english.json", "zh": "chinese.json"}


def read_list(path: str | Path) -> list[str]:
    """One entry per line; blank lines and '#' comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: blocklist file not found")
    lines = (line.split("#", 1)[0].strip().lower() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def glin_words(language: str) -> list[str]:
    spec = importlib.util.find_spec("glin_profanity")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the word blocklist needs glin-profanity's lists: pip install --no-deps glin-profanity==4.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "dictionaries" / GLIN_LISTS[language]
    return [w.lower() for w in json.loads(path.read_text(encoding="utf-8"))["words"]]


@dataclass
class WordBlocklist(Filter):
    """Drop a document with `min_distinct` different blocklisted words, or more than
    `max_hits_per_1k_chars` hits (a word repeated: "bastard" five times in a play is literature,
    five different slurs are not)."""

    name: ClassVar[str] = "word_blocklist"
    lists: list[str] = field(default_factory=lambda: ["en", "zh"])   # glin-profanity languages
    files: list[str] = field(default_factory=list)
    min_distinct: int = 3
    max_hits_per_1k_chars: float = 4.0
    min_chinese_word_chars: int = 2   # single characters (e.g. 乳 in 乳业) are too ambiguous to block

    def setup(self) -> None:
        import ahocorasick

        words = set()
        for lang in self.lists:
            words.update(glin_words(lang))
        for f in self.files:
            words.update(read_list(f))
        self.automaton = ahocorasick.Automaton()
        for w in words:
            if w.isascii() or len(w) >= self.min_chinese_word_chars:
                self.automaton.add_word(w, w)
        self.empty = len(self.automaton) == 0
        if not self.empty:
            self.automaton.make_automaton()

    def hits(self, text: str) -> list[str]:
        if self.empty:
            return []
        lower = text.lower()
        found = []
        for end, word in self.automaton.iter(lower):
            start = end - len(word) + 1
            if word[0].isascii() and word[0].isalnum() and start > 0 and lower[start - 1].isalnum():
                continue
            if word[-1].isascii() and word[-1].isalnum() and end + 1 < len(lower) and lower[end + 1].isalnum():
                continue
            found.append(word)
        return found

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        found = self.hits(doc.text)
        doc.metadata["blocklist_hits"] = len(found)
        if len(set(found)) >= self.min_distinct or 1000 * len(found) / max(1, len(doc.text)) > self.max_hits_per_1k_chars:
            return False, "blocklisted_words"
        return True


@dataclass
class Toxicity(ScoreFilter):
    name: ClassVar[str] = "toxicity"
    score_field: ClassVar[str] = "toxic_score"
    default_model: ClassVar[str] = "toxic.npz"


@dataclass
class Pornography(ScoreFilter):
    name: ClassVar[str] = "porn"
    score_field: ClassVar[str] = "porn_score"
    default_model: ClassVar[str] = "porn.npz"
