"""Character-based equivalents of the Gopher rules for Chinese.

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.

Chinese has no spaces, so "words" become characters: the length bounds count CJK characters, the
alphabetic-words rule becomes the share of characters that are letters/ideographs/digits, the stop
words are the commonest function characters, and the repetition n-grams are character n-grams
(lengths doubled from Gopher's word n-grams, as a Chinese word is about 1.5-2 characters).
The thresholds were checked on People's Daily pages: they keep real news and drop the planted spam
and gibberish of the demo crawl (tests/data/test_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.rules.gopher import GopherRepetition
from lmforge.data.step import Filter
from lmforge.data.text import CJK_RE, is_punctuation

STOP_CHARS = ["的", "是", "了", "在", "和", "有", "我", "不", "这", "为", "中", "一"]


def chinese_quality_reason(text: str, min_chars: int = 100, max_chars: int = 200_000, min_content_ratio: float = 0.7,
                           min_cjk_ratio: float = 0.3, max_symbol_ratio: float = 0.05,
                           max_bullet_lines_ratio: float = 0.9, max_ellipsis_lines_ratio: float = 0.3,
                           min_stop_chars: int = 2, stop_chars: frozenset[str] = frozenset(STOP_CHARS)) -> str | None:
    chars = [c for c in text if not c.isspace()]
    n = len(chars)
    n_cjk = len(CJK_RE.findall(text))
    if n_cjk < min_chars:
        return "zh_short_doc"
    if n > max_chars:
        return "zh_long_doc"
    if sum(not is_punctuation(c) for c in chars) / n < min_content_ratio:
        return "zh_below_content_ratio"
    if n_cjk / n < min_cjk_ratio:
        return "zh_below_cjk_ratio"
    if (text.count("#") + text.count("…") + text.count("...")) / n > max_symbol_ratio:
        return "zh_too_many_symbols"
    lines = text.splitlines() or [""]
    if sum(s.lstrip().startswith(("•", "-", "·")) for s in lines) / len(lines) > max_bullet_lines_ratio:
        return "zh_too_many_bullets"
    if sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) > max_ellipsis_lines_ratio:
        return "zh_too_many_end_ellipsis"
    if len(stop_chars.intersection(chars)) < min_stop_chars:
        return "zh_not_enough_stop_chars"
    return None


@dataclass
class ChineseQuality(Filter):
    name: ClassVar[str] = "chinese_quality"
    min_chars: int = 100
    max_chars: int = 200_000
    min_content_ratio: float = 0.7
    min_cjk_ratio: float = 0.3
    max_symbol_ratio: float = 0.05
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_stop_chars: int = 2
    stop_chars: list[str] = field(default_factory=lambda: list(STOP_CHARS))
    languages: list[str] = field(default_factory=lambda: ["zh"])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = chinese_quality_reason(doc.text, self.min_chars, self.max_chars, self.min_content_ratio,
                                        self.min_cjk_ratio, self.max_symbol_ratio, self.max_bullet_lines_ratio,
                                        self.max_ellipsis_lines_ratio, self.min_stop_chars, frozenset(self.stop_chars))
        return (False, reason) if reason else True


@dataclass
class ChineseRepetition(GopherRepetition):
    """Gopher's repetition rules with character n-grams."""

    name: ClassVar[str] = "chinese_repetition"
    top_ngrams: list[list[float]] = field(default_factory=lambda: [[4, 0.20], [6, 0.18], [8, 0.16]])
    dup_ngrams: list[list[float]] = field(default_factory=lambda: [[10, 0.15], [12, 0.14], [14, 0.13], [16, 0.12],
                                                                   [18, 0.11], [20, 0.10]])
    languages: list[str] = field(default_factory=lambda: ["zh"])
    reason_prefix: ClassVar[str] = "zh_"

    def units(self, text: str) -> list[str]:
        """What the n-grams are made of: characters other than spaces."""
        return [c for c in text if not c.isspace()]
