"""Long-context data selection.

Paper: InternLM2 report, arXiv 2403.17297, sections 3.1 and 4; docs/papers.md §4, "Long-context data".

InternLM2 keeps documents longer than 32 KB, applies statistical filters, then a perplexity filter
on P(S2 | S1) - P(S2): does the earlier part of the document help predict the later part? The
first two are here; the perplexity-difference filter needs an lmforge model and lives in
`lmforge.scorers.perplexity` (recipe step `perplexity_gain`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter


@dataclass
class MinLength(Filter):
    name: ClassVar[str] = "min_length"
    min_bytes: int = 32 * 1024

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        # len(text) <= bytes <= 4 len(text): most documents are decided without encoding
        if len(doc.text) >= self.min_bytes or (4 * len(doc.text) >= self.min_bytes
                                               and len(doc.text.encode("utf-8")) >= self.min_bytes):
            return True
        return False, "shorter_than_min_bytes"


def long_doc_reason(text: str, min_unique_line_ratio: float = 0.7, min_mean_line_chars: float = 20,
                    max_top_char_ratio: float = 0.3, max_digit_ratio: float = 0.3) -> str | None:
    """Statistics that expose long documents made of concatenated lists, logs or tables."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "long_empty"
    if len(set(lines)) / len(lines) < min_unique_line_ratio:
        return "long_repeated_lines"
    if sum(map(len, lines)) / len(lines) < min_mean_line_chars:
        return "long_short_lines"
    chars = Counter(c for c in text if not c.isspace())
    total = sum(chars.values())
    if chars and chars.most_common(1)[0][1] / total > max_top_char_ratio:
        return "long_one_character"
    if sum(n for c, n in chars.items() if c.isdigit()) / max(1, total) > max_digit_ratio:
        return "long_digits"
    return None


@dataclass
class LongContextStatistics(Filter):
    name: ClassVar[str] = "long_statistics"
    min_unique_line_ratio: float = 0.7
    min_mean_line_chars: float = 20
    max_top_char_ratio: float = 0.3
    max_digit_ratio: float = 0.3

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = long_doc_reason(doc.text, self.min_unique_line_ratio, self.min_mean_line_chars,
                                 self.max_top_char_ratio, self.max_digit_ratio)
        return (False, reason) if reason else True
